"""Detection scores at inference: how the class probability and the quality branch combine.

A score function is a callable ``score_fn(cls, quality) -> (gate, score)`` with an attribute
``needs_quality``. ``cls`` (P, K) are the per-prior class probabilities, ``quality`` (P, 1) the
quality probabilities (None when the head has no quality branch, which is allowed only with
``needs_quality = False``). Candidates are the (prior, class) pairs with
``gate > test_score_thresh``; they are ranked (per-level top-k) and reported by ``score``.

``model.test_score_fn`` takes such a callable: one of the classes below built in the config
(``L(ClsPowQuality)(alpha=0.4)``), any function of the same signature (without a
``needs_quality`` attribute it is taken to need a quality), or, for configs and command-line
overrides, one of the names of :data:`SCORE_FUNCTIONS` (built with its defaults):

==========================  ==============================  ==================  ====================
name                        callable                        gate (thresholded)  score (ranked, kept)
==========================  ==============================  ==================  ====================
``cls``                     ``ClsScore()``                  cls                 cls
``sqrt_cls_quality``        ``SqrtClsQuality()``            sqrt(cls * q)       sqrt(cls * q)
``sqrt_cls_quality_gated``  ``SqrtClsQuality(gated=True)``  cls                 sqrt(cls * q)
``cls_quality_gated``       ``ClsQuality(gated=True)``      cls                 cls * q
``cls_quality``             ``ClsQuality()``                cls * q             cls * q
``cls_pow_quality``         ``ClsPowQuality(alpha=0.5)``    cls^a * q^(1-a)     cls^a * q^(1-a)
==========================  ==============================  ==================  ====================
Ranking ``sqrt(cls * q)`` equals ranking ``cls * q`` (official FCOS ranks by the product).
"""

import functools
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "ScoreFunction",
    "ClsScore",
    "SqrtClsQuality",
    "ClsQuality",
    "ClsPowQuality",
    "SCORE_FUNCTIONS",
    "build_score_fn",
    "needs_quality",
    "describe_score_fn",
]

ScoreFn = Callable[[Tensor, Optional[Tensor]], Tuple[Tensor, Tensor]]


class ScoreFunction:
    """Base of the score functions: ``__call__(cls, quality) -> (gate, score)``."""

    needs_quality: bool = True

    def __call__(self, cls: Tensor, quality: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if self.needs_quality and quality is None:
            raise ValueError(f"score function {self!r} needs a quality branch")
        return self.scores(cls, quality)

    def scores(self, cls: Tensor, quality: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class ClsScore(ScoreFunction):
    """The class probability alone (RetinaNet; SAPD Sec. 3.4)."""

    needs_quality = False

    def scores(self, cls, quality):
        return cls, cls


class SqrtClsQuality(ScoreFunction):
    """``sqrt(cls * q)``; with ``gated`` the threshold applies to ``cls`` alone (official FCOS and
    ATSS), otherwise to the product (detectron2's FCOS)."""

    def __init__(self, *, gated: bool = False):
        self.gated = bool(gated)

    def scores(self, cls, quality):
        score = torch.sqrt(cls * quality)
        return (cls if self.gated else score), score


class ClsQuality(ScoreFunction):
    """``cls * q``; with ``gated`` the threshold applies to ``cls`` alone (Pseudo-IoU's mmdet
    code), otherwise to the product (AutoAssign's cls x objectness)."""

    def __init__(self, *, gated: bool = False):
        self.gated = bool(gated)

    def scores(self, cls, quality):
        score = cls * quality
        return (cls if self.gated else score), score


class ClsPowQuality(ScoreFunction):
    """``cls^alpha * q^(1 - alpha)``, thresholded and ranked (IoU-aware RetinaNet, Eq. 7;
    ``alpha`` 0.5 in the official code, 0.4-0.5 best in Tables 3-4)."""

    def __init__(self, *, alpha: float = 0.5):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1] (score cls^alpha x q^(1 - alpha))")
        self.alpha = alpha

    def scores(self, cls, quality):
        score = cls.pow(self.alpha) * quality.pow(1.0 - self.alpha)
        return score, score


#: The score functions a config or an override may give by name (the only place names are mapped
#: to callables); each value builds the callable with the defaults of the table above.
SCORE_FUNCTIONS: Dict[str, Callable[[], ScoreFunction]] = {
    "cls": ClsScore,
    "sqrt_cls_quality": SqrtClsQuality,
    "sqrt_cls_quality_gated": functools.partial(SqrtClsQuality, gated=True),
    "cls_quality_gated": functools.partial(ClsQuality, gated=True),
    "cls_quality": ClsQuality,
    "cls_pow_quality": ClsPowQuality,
}


def build_score_fn(spec: Union[str, ScoreFn], key: str = "model.test_score_fn") -> ScoreFn:
    """The score callable of ``spec``: a name of :data:`SCORE_FUNCTIONS`, or a callable (returned
    as it is). An unknown name or a non-callable is a ``ValueError`` naming the config ``key`` and
    the allowed names."""
    if isinstance(spec, str):
        if spec not in SCORE_FUNCTIONS:
            raise ValueError(f"{key}={spec!r}; allowed: {', '.join(SCORE_FUNCTIONS)}")
        return SCORE_FUNCTIONS[spec]()
    if not callable(spec):
        raise ValueError(
            f"{key}={spec!r} is neither a callable score(cls, quality) -> (gate, score) nor a "
            f"name; allowed names: {', '.join(SCORE_FUNCTIONS)}"
        )
    return spec


def needs_quality(score_fn: ScoreFn) -> bool:
    """Whether ``score_fn`` uses the quality branch (True unless it says otherwise)."""
    return bool(getattr(score_fn, "needs_quality", True))


def describe_score_fn(score_fn: ScoreFn) -> str:
    """How messages name a score callable: its repr, or a function's qualified name."""
    if isinstance(score_fn, ScoreFunction):
        return repr(score_fn)
    return getattr(score_fn, "__qualname__", None) or repr(score_fn)

"""Detection scores at inference: how the class probability and the quality branch combine.

A score function maps the per-prior class probabilities ``cls`` (P, K) and quality probabilities
``q`` (P, 1) (or None) to ``(gate, score)``: candidates are the (prior, class) pairs with
``gate > test_score_thresh``; they are ranked (per-level top-k) and reported by ``score``.

================================  =========================  ====================  ==========================
name                              gate (thresholded)         score (ranked, kept)   used by
================================  =========================  ====================  ==========================
``cls``                           cls                        cls                    RetinaNet, SAPD
``sqrt_cls_quality``              sqrt(cls * q)              sqrt(cls * q)          detectron2 FCOS (0.2)
``sqrt_cls_quality_gated``        cls                        sqrt(cls * q)          FCOS / ATSS official
``cls_quality_gated``             cls                        cls * q                Pseudo-IoU (mmdet)
``cls_quality``                   cls * q                    cls * q                AutoAssign (cls x obj)
``cls_pow_quality``               cls^a * q^(1-a)            cls^a * q^(1-a)        IoU-aware RetinaNet (Eq. 7)
================================  =========================  ====================  ==========================
Ranking ``sqrt(cls * q)`` equals ranking ``cls * q`` (official FCOS ranks by the product).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

SCORE_FUNCTIONS = (
    "cls",
    "sqrt_cls_quality",
    "sqrt_cls_quality_gated",
    "cls_quality_gated",
    "cls_quality",
    "cls_pow_quality",
)


def needs_quality(name: str) -> bool:
    return name != "cls"


def compute_scores(
    name: str, cls: Tensor, quality: Optional[Tensor], alpha: float = 0.5
) -> Tuple[Tensor, Tensor]:
    """(gate, score) for probabilities ``cls`` (P, K) and ``quality`` (P, 1)."""
    if name == "cls":
        return cls, cls
    if quality is None:
        raise ValueError(f"score function {name!r} needs a quality branch")
    if name == "sqrt_cls_quality":
        score = torch.sqrt(cls * quality)
        return score, score
    if name == "sqrt_cls_quality_gated":
        return cls, torch.sqrt(cls * quality)
    if name == "cls_quality_gated":
        return cls, cls * quality
    if name == "cls_quality":
        score = cls * quality
        return score, score
    if name == "cls_pow_quality":
        score = cls.pow(alpha) * quality.pow(1.0 - alpha)
        return score, score
    raise ValueError(f"unknown score function {name!r}; allowed: {', '.join(SCORE_FUNCTIONS)}")

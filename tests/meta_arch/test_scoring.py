"""The score functions (dense_assign/meta_arch/scoring.py) on small hand-checked inputs."""

import pytest
import torch

from dense_assign.meta_arch.scoring import (
    SCORE_FUNCTIONS,
    ClsPowQuality,
    ClsQuality,
    SqrtClsQuality,
    build_score_fn,
    needs_quality,
)


def test_score_functions():
    cls = torch.tensor([[0.04, 0.64]])
    q = torch.tensor([[0.25]])

    def close(t, values):
        return torch.allclose(t, torch.tensor([values]), atol=1e-6)

    gate, score = build_score_fn("sqrt_cls_quality_gated")(cls, q)
    assert close(gate, [0.04, 0.64]) and close(score, [0.1, 0.4])
    gate, score = build_score_fn("sqrt_cls_quality")(cls, q)
    assert close(gate, [0.1, 0.4]) and close(score, [0.1, 0.4])
    gate, score = build_score_fn("cls_quality_gated")(cls, q)
    assert close(gate, [0.04, 0.64]) and close(score, [0.01, 0.16])
    gate, score = build_score_fn("cls_quality")(cls, q)
    assert close(gate, [0.01, 0.16]) and close(score, [0.01, 0.16])
    _, score = build_score_fn("cls_pow_quality")(cls, q)  # alpha 0.5 by default
    assert close(score, [0.1, 0.4])
    _, score = ClsPowQuality(alpha=1.0)(cls, q)
    assert close(score, [0.04, 0.64])
    with pytest.raises(ValueError, match="quality"):
        build_score_fn("cls_quality")(cls, None)


def test_score_function_names_callables_and_errors():
    cls = torch.tensor([[0.04, 0.64]])
    q = torch.tensor([[0.25]])
    # a name builds the callable of the table in scoring.py, with its defaults
    assert build_score_fn("cls_pow_quality") == ClsPowQuality(alpha=0.5)
    assert build_score_fn("sqrt_cls_quality_gated") == SqrtClsQuality(gated=True)
    assert build_score_fn("cls_quality_gated") == ClsQuality(gated=True)
    assert [needs_quality(build_score_fn(n)) for n in SCORE_FUNCTIONS] == [False] + [True] * 5
    gate, score = build_score_fn("cls")(cls, None)  # no quality needed
    assert torch.equal(gate, cls) and torch.equal(score, cls)
    # a callable is used as it is; a plain function needs a quality unless it says otherwise
    fn = ClsPowQuality(alpha=0.25)
    assert build_score_fn(fn) is fn
    _, score = fn(cls, q)
    assert torch.allclose(score, cls**0.25 * q**0.75)
    assert needs_quality(lambda c, x: (c, c)) and repr(fn) == "ClsPowQuality(alpha=0.25)"
    with pytest.raises(ValueError, match=r"model.test_score_fn='softmax'; allowed: cls, sqrt_cls"):
        build_score_fn("softmax")
    with pytest.raises(ValueError, match=r"model.x=3 is neither a callable"):
        build_score_fn(3, "model.x")
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0, 1\]"):
        ClsPowQuality(alpha=1.5)

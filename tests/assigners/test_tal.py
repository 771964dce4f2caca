"""TOOD's task-aligned assigner and the PhasedAssigner: hand-computed cases, equality with a dense
reference kept here (random, edge and crowded inputs on the packaged configs' priors), training
steps on a point model and an anchor (#A=1) model, the phase switch, and a 1000-box image."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401  (registers every assigner)
from dense_assign.assigners import ATSSAssigner, PhasedAssigner, TaskAlignedAssigner
from dense_assign.assigners.base import DEFAULT_BOX_TRANSFORM
from dense_assign.assigners.candidates import smallest_per_gt
from dense_assign.box_ops import ltrb, pair_iou
from dense_assign.registry import ASSIGNER_REGISTRY
from dense_assign.structures import DensePredictions

from ..helpers import (
    REPO,
    BoxesAsDeltas,
    config_priors,
    make_instances,
    make_priors,
    random_batch,
    random_instances,
    random_logits_and_deltas,
    shrink_model,
)

K = 3


def _preds(logits, deltas):
    return DensePredictions(logits=logits, deltas=deltas, quality=None, features=[])


def _positives(r, num_classes=K):
    pos = (r.labels >= 0) & (r.labels < num_classes)
    return {int(i): int(r.matched_idxs[i]) for i in pos.nonzero().flatten()}


# ------------------------------------------------------------------ the dense reference
def dense_tal(assigner, priors, gt, preds):
    """The rule on dense (M, R) matrices with plain loops over GTs and priors: (labels,
    matched_idxs, cls_targets). The elementwise values (IoU, log t) use the same formulas as the
    package, so near-ties rank the same; everything else is computed independently."""
    k_cls, R = assigner.num_classes, len(priors)
    boxes, classes = gt.gt_boxes.tensor, gt.gt_classes
    labels = torch.full((R,), k_cls, dtype=torch.long)
    matched = torch.full((R,), -1, dtype=torch.long)
    targets = torch.zeros(R)
    if len(boxes) == 0 or R == 0:
        return labels, matched, targets
    pred = assigner.decode_boxes(preds.deltas, priors.boxes)
    iou = pair_iou(pred[None], boxes[:, None])  # (M, R)
    inside = ltrb(priors.centers[None], boxes[:, None]).amin(dim=2) > 0.01
    log_t = torch.zeros_like(iou)
    if assigner.alpha != 0:
        log_t = log_t + assigner.alpha * F.logsigmoid(preds.logits[:, classes].t())
    if assigner.beta != 0:
        log_t = log_t + assigner.beta * torch.log(iou)
    claims = {}
    for m in range(len(boxes)):
        values = log_t[m].tolist()
        eligible = [r for r in range(R) if values[r] > -math.inf]  # t > 0
        if assigner.topk_over == "inside":
            eligible = [r for r in eligible if inside[m, r]]
        top = sorted(eligible, key=lambda r: (-values[r], r))[: assigner.topk]
        if assigner.topk_over == "all":
            top = [r for r in top if inside[m, r]]
        for r in top:
            claims.setdefault(r, []).append(m)
    for r, gts in claims.items():
        matched[r] = max(gts, key=lambda m: (iou[m, r].item(), -m))
        labels[r] = classes[matched[r]]
    for m in range(len(boxes)):
        mine = (matched == m).nonzero().flatten()
        if len(mine) == 0:
            continue
        top_log_t = log_t[m, mine].max()
        top_iou = iou[m, mine].max()
        targets[mine] = torch.exp(log_t[m, mine] - top_log_t) * top_iou
    return labels, matched, targets


def _assert_same(r, ref):
    labels, matched, targets = ref
    assert torch.equal(r.labels, labels)
    assert torch.equal(r.matched_idxs, matched)
    torch.testing.assert_close(r.cls_targets, targets, rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------ 1. hand-computed cases
# 32x32 image, one level of stride 8: points at 4, 12, 20, 28; prior index = 4 * row + column.
A, B, C, D, E, F_, G, H = 0, 1, 4, 5, 8, 9, 12, 13  # (4,4) (12,4) (4,12) (12,12) (4,20) ... (12,28)
FAR = [100.0, 100.0, 101.0, 101.0]  # a predicted box that overlaps nothing


def _hand_case():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    boxes = torch.tensor([FAR] * 16)
    logits = torch.zeros(16, 2)
    ln9, ln3 = math.log(9.0), math.log(3.0)
    # predicted box, (logit class 0, logit class 1): sigmoid(ln 9) = 0.9, sigmoid(ln 3) = 0.75
    for prior, box, logit in (
        (A, [0, 0, 16, 16], (0.0, ln9)),
        (B, [0, 0, 16, 8], (ln9, 0.0)),
        (C, [0, 0, 16, 12], (ln3, 0.0)),
        (D, [0, 0, 8, 8], (0.0, 0.0)),
        (E, [0, 0, 16, 24], (0.0, 0.0)),
        (F_, [0, 8, 16, 24], (0.0, -ln9)),  # s1 = 0.1
        (G, [0, 0, 16, 28], (0.0, -ln3)),  # s1 = 0.25
        (H, [0, 16, 16, 32], (0.0, 0.0)),
    ):
        boxes[prior] = torch.tensor(box, dtype=torch.float32)
        logits[prior] = torch.tensor(logit)
    # GT0 holds the points A, B, C, D; GT1 (the left half) A..H
    gt = make_instances([[0, 0, 16, 16], [0, 0, 16, 32]], [0, 1], (32, 32))
    return priors, gt, _preds(logits, boxes)


def test_hand_case_topk_conflict_and_soft_targets():
    priors, gt, preds = _hand_case()
    a = TaskAlignedAssigner(num_classes=2, topk=3, box2box_transform=BoxesAsDeltas())
    r = a(priors, gt, predictions=preds)
    # GT0 (u: A 1, B 1/2, C 3/4, D 1/4): t = 0.5, 0.9 / 64, 0.75^7, 0.5 / 4096 -> top 3 A, C, B.
    t0 = {A: 0.5 * 1.0, B: 0.9 * 0.5**6, C: 0.75 * 0.75**6}
    # GT1 (u: A 1/2, B 1/4, C 3/8, D 1/8, E 3/4, F 1/2, G 7/8, H 1/2): t = A 0.9 / 64, E 0.5 x
    # 0.75^6, F 0.1 / 64, G 0.25 x 0.875^6, H 0.5 / 64, ... -> top 3 G, E, A
    t1 = {E: 0.5 * 0.75**6, G: 0.25 * 0.875**6}
    # A is claimed by both: IoU 1 with GT0 > 1/2 with GT1 -> GT0; GT1 keeps G and E (H, its 4th,
    # is not promoted)
    assert _positives(r, 2) == {A: 0, B: 0, C: 0, G: 1, E: 1}
    assert r.labels[[A, B, C, G, E]].tolist() == [0, 0, 0, 1, 1]
    # t_hat = t / max t * max u over the GT's positives: GT0 max t 0.5, max u 1; GT1 max t at G,
    # max u 7/8 (G)
    expected = torch.zeros(16)
    for prior, t in t0.items():
        expected[prior] = t / 0.5 * 1.0
    for prior, t in t1.items():
        expected[prior] = t / t1[G] * 0.875
    assert expected[A] == 1.0 and expected[G] == 0.875
    torch.testing.assert_close(r.cls_targets, expected, rtol=1e-6, atol=0.0)
    assert r.stats["num_pos"] == 5 and r.stats["gt_without_pos"] == 0
    _assert_same(r, dense_tal(a, priors, gt, preds))


def test_hand_case_topk_over_all_filters_after_ranking():
    priors, gt, preds = _hand_case()
    gt = gt[:1]  # GT0 only
    # the prior at (20, 4) is outside GT0 but predicts GT0 exactly with s0 = 0.9: t = 0.9, the best
    preds.deltas[2] = torch.tensor([0.0, 0.0, 16.0, 16.0])
    preds.logits[2, 0] = math.log(9.0)
    inside = TaskAlignedAssigner(num_classes=2, topk=2, box2box_transform=BoxesAsDeltas())
    every = TaskAlignedAssigner(
        num_classes=2, topk=2, topk_over="all", box2box_transform=BoxesAsDeltas()
    )
    # the paper's order: the top 2 inside GT0 are A (t 0.5) and C (0.134)
    assert _positives(inside(priors, gt, predictions=preds), 2) == {A: 0, C: 0}
    # mmdetection's: the top 2 over all priors are (20, 4) and A; (20, 4) is outside -> A alone
    r = every(priors, gt, predictions=preds)
    assert _positives(r, 2) == {A: 0}
    assert r.cls_targets[A] == 1.0
    _assert_same(r, dense_tal(every, priors, gt, preds))


def test_zero_overlap_is_no_candidate_and_tiny_overlap_survives_float32():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    boxes = torch.tensor([FAR] * 16)
    # A's predicted box overlaps GT0 by 1e-3 x 1e-3: u = 1e-6 / 256 and t = 0.5 u^6 ~ 2e-52, 0 in
    # float32, but t > 0: a positive, with t_hat = its own u
    boxes[A] = torch.tensor([0.0, 0.0, 1e-3, 1e-3])
    gt = make_instances([[0, 0, 16, 16], [16.5, 16.5, 31, 31]], [0, 1], (32, 32))
    preds = _preds(torch.zeros(16, 2), boxes)
    a = TaskAlignedAssigner(num_classes=2, box2box_transform=BoxesAsDeltas())
    r = a(priors, gt, predictions=preds)
    u = pair_iou(boxes[A], gt.gt_boxes.tensor[0])
    assert 0.5 * float(u) ** 6 > 0 and torch.tensor(0.5) * u**6 == 0  # underflows in float32
    # GT1's inside points predict boxes that miss it: u = 0, t = 0, no positive
    assert _positives(r, 2) == {A: 0}
    assert r.cls_targets[A] == u
    assert r.stats["gt_without_pos"] == 1


def test_alpha_and_beta_weigh_score_against_iou():
    priors, gt, preds = _hand_case()
    gt = gt[:1]
    # alpha = 1, beta = 0: t = s alone -> the top 2 by s0 are B (0.9) and C (0.75)
    by_score = TaskAlignedAssigner(
        num_classes=2, topk=2, beta=0.0, box2box_transform=BoxesAsDeltas()
    )
    assert _positives(by_score(priors, gt, predictions=preds), 2) == {B: 0, C: 0}
    # alpha = 0: t = u^6 alone -> A (1) and C (3/4); t_hat = u^6 / 1 x 1
    by_iou = TaskAlignedAssigner(
        num_classes=2, topk=2, alpha=0.0, box2box_transform=BoxesAsDeltas()
    )
    r = by_iou(priors, gt, predictions=preds)
    assert _positives(r, 2) == {A: 0, C: 0}
    assert r.cls_targets[C] == pytest.approx(0.75**6, rel=1e-6)


def test_ties_go_to_the_lowest_prior_and_the_lowest_gt():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    boxes = torch.tensor([FAR] * 16)
    for prior in (A, B, C, D):  # the same predicted box and score: equal t for GT0
        boxes[prior] = torch.tensor([0.0, 0.0, 16.0, 16.0])
    # GT0 and an exact duplicate GT1 of another class: equal IoUs for both
    gt = make_instances([[0, 0, 16, 16], [0, 0, 16, 16]], [0, 1], (32, 32))
    a = TaskAlignedAssigner(num_classes=2, topk=2, box2box_transform=BoxesAsDeltas())
    r = a(priors, gt, predictions=_preds(torch.zeros(16, 2), boxes))
    # the 2 lowest prior indices, both to GT0 (IoU 1 with either GT); GT1 gets nothing
    assert _positives(r, 2) == {A: 0, B: 0}
    assert r.stats["gt_without_pos"] == 1
    assert r.cls_targets[[A, B]].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("shuffle", [False, True])
def test_top_k_per_gt_breaks_ties_by_lowest_prior(shuffle):
    # GT 0: keys 0.5, -1, 0.5, -0.0, 0.0 at priors 0..4; GT 2: 3e-39 (subnormal), -inf, 7
    g = torch.tensor([0, 0, 0, 0, 0, 2, 2, 2])
    p = torch.tensor([0, 1, 2, 3, 4, 1, 5, 9])
    key = torch.tensor([0.5, -1.0, 0.5, -0.0, 0.0, 3e-39, -math.inf, 7.0])
    rank = torch.tensor([0, 4, 1, 2, 3, 1, 2, 0])  # ties (0.5; -0 = 0) to the lower prior
    if shuffle:  # pairs out of (GT, prior) order are sorted first
        perm = torch.tensor([5, 3, 0, 7, 1, 6, 2, 4])
        g, p, key, rank = g[perm], p[perm], key[perm], rank[perm]
    for k in range(1, 6):
        assert torch.equal(smallest_per_gt(g, -key, k, 3, p), rank < k), k
    assert smallest_per_gt(g[:0], -key[:0], 3, 3, p[:0]).shape == (0,)


def test_empty_gt_gives_zero_soft_targets():
    priors = make_priors(image_size=(32, 32), strides=(8, 16))
    gt = make_instances(torch.zeros(0, 4), torch.zeros(0), (32, 32))
    r = TaskAlignedAssigner(num_classes=K)(priors, gt)  # no predictions needed without GT
    assert (r.labels == K).all() and torch.equal(r.cls_targets, torch.zeros(len(priors)))


def test_predictions_are_required_and_not_differentiated():
    priors, gt, preds = _hand_case()
    a = TaskAlignedAssigner(num_classes=2, box2box_transform=BoxesAsDeltas())
    with pytest.raises(ValueError, match="prediction-aware"):
        a(priors, gt)
    preds.logits.requires_grad_(True)
    preds.deltas.requires_grad_(True)
    r = a(priors, gt, predictions=preds)
    assert not r.cls_targets.requires_grad


def test_validation():
    for kwargs, key in (
        ({"topk": 0}, "topk"),
        ({"alpha": -1.0}, "alpha"),
        ({"beta": float("nan")}, "beta"),
        ({"topk_over": "outside"}, "topk_over"),
    ):
        with pytest.raises(ValueError, match=key):
            TaskAlignedAssigner(num_classes=K, **kwargs)


# ------------------------------------------------------------------ 2. dense reference
#: the packaged configs whose priors the equality tests use: points at (k + 0.5) s with
#: (l, t, r, b) x stride decoding (TOOD / TAL), anchors #A=1 and #A=9 with RetinaNet deltas, points
#: at k s (AutoAssign)
PRIOR_CONFIGS = {
    "tood": "configs/common/models/tood.py",
    "atss": "configs/common/models/atss.py",
    "atss_A9": "configs/common/models/atss_A9.py",
    "autoassign": "configs/common/models/autoassign.py",
}


def _config_priors(name, image_size):
    return config_priors(PRIOR_CONFIGS[name], image_size)


def _random_predictions(priors, transform, seed, ties=False):
    # anchors' deltas N(0, 2): some predicted boxes far from their anchors (u = 0); ties: many
    # equal metrics, ranked by prior index
    return _preds(*random_logits_and_deltas(priors, transform, seed, K, 2.0, ties=ties))


def _random_gt(n, size, seed, min_wh=2.0, max_wh=120.0):
    return random_instances(n, size, seed, min_wh, max_wh, num_classes=K)


def _edge_gt(size):
    h, w = size
    boxes = [
        [0, 0, 40, 30],  # at the top-left corner
        [w - 50, h - 20, w, h],  # at the bottom-right corner
        [0, 0, w, h],  # the whole image
        [20, 20, 20, 60],  # zero width
        [30, 30, 30, 30],  # a point
        [50, 50, 53, 52],  # smaller than a stride
        [60, 60, 120, 110],  # duplicated, same class ...
        [60, 60, 120, 110],
        [60, 60, 120, 110],  # ... and another class
        [4, 4, 12, 12],  # exactly on the stride-8 grid lines
        [w + 10, h + 10, w + 90, h + 60],  # outside the image
        [-30, -30, 8, 8],  # partly outside
    ]
    return make_instances(boxes, [0, 1, 2, 0, 1, 2, 1, 1, 2, 0, 1, 2], size)


CASES = [
    # (config, gt kind, topk_over, alpha, beta, ties)
    ("tood", "random", "inside", 1.0, 6.0, False),
    ("tood", "random", "all", 1.0, 6.0, False),
    ("tood", "edge", "inside", 1.0, 6.0, False),
    ("tood", "edge", "all", 1.0, 6.0, True),
    ("tood", "crowded", "inside", 1.0, 6.0, False),
    ("tood", "crowded", "all", 1.0, 6.0, False),
    ("tood", "random", "inside", 1.0, 6.0, True),
    ("tood", "random", "all", 1.0, 0.0, False),  # beta = 0: every pair a candidate
    ("tood", "random", "inside", 0.0, 6.0, False),
    ("tood", "random", "inside", 0.5, 2.0, False),
    ("atss", "random", "inside", 1.0, 6.0, False),
    ("atss", "edge", "all", 1.0, 6.0, False),
    ("atss", "crowded", "inside", 1.0, 6.0, True),
    ("atss_A9", "random", "inside", 1.0, 6.0, False),
    ("atss_A9", "edge", "all", 1.0, 6.0, True),
    ("autoassign", "edge", "inside", 1.0, 6.0, False),
    ("autoassign", "crowded", "all", 1.0, 6.0, False),
]


@pytest.mark.parametrize("config,kind,topk_over,alpha,beta,ties", CASES)
def test_equals_dense_reference(config, kind, topk_over, alpha, beta, ties):
    size = (256, 320)
    priors, transform = _config_priors(config, size)
    seed = CASES.index((config, kind, topk_over, alpha, beta, ties))
    preds = _random_predictions(priors, transform, seed, ties=ties)
    gt = {
        "random": lambda: _random_gt(12, size, seed),
        "edge": lambda: _edge_gt(size),
        "crowded": lambda: _random_gt(300, size, seed, max_wh=60.0),
    }[kind]()
    kwargs = dict(topk_over=topk_over, alpha=alpha, beta=beta, box2box_transform=transform)
    a = TaskAlignedAssigner(num_classes=K, **kwargs)
    r = a(priors, gt, predictions=preds)
    ref = dense_tal(a, priors, gt, preds)
    _assert_same(r, ref)
    assert r.stats["num_pos"] > 0
    # in chunks of a few GTs: the same
    chunked = TaskAlignedAssigner(num_classes=K, chunk_pairs=2000, **kwargs)
    _assert_same(chunked(priors, gt, predictions=preds), ref)


def test_priors_off_the_grid_take_every_pair():
    # shuffled priors are not a grid: every (GT, prior) pair is a candidate, same rule
    priors, transform = _config_priors("tood", (128, 160))
    perm = torch.randperm(len(priors), generator=torch.Generator().manual_seed(0))
    priors.boxes, priors.centers = priors.boxes[perm], priors.centers[perm]
    priors.strides, priors.levels = priors.strides[perm], priors.levels[perm]
    preds = _random_predictions(priors, transform, seed=5)
    gt = _random_gt(20, (128, 160), seed=5, max_wh=60.0)
    for topk_over in ("inside", "all"):
        a = TaskAlignedAssigner(num_classes=K, topk_over=topk_over, box2box_transform=transform)
        _assert_same(a(priors, gt, predictions=preds), dense_tal(a, priors, gt, preds))


# ------------------------------------------------------------------ 3. a 1000-box image
def test_thousand_boxes_on_800x1333():
    size = (800, 1333)
    priors, transform = _config_priors("tood", size)
    preds = _random_predictions(priors, transform, seed=7)
    gt = _random_gt(1000, size, seed=7, min_wh=4.0, max_wh=60.0)
    a = TaskAlignedAssigner(num_classes=K, box2box_transform=transform)
    r = a(priors, gt, predictions=preds)
    pos = (r.labels >= 0) & (r.labels < K)
    m = r.matched_idxs[pos]
    boxes = gt.gt_boxes.tensor
    assert pos.sum() > 1000
    assert torch.equal(r.labels[pos], gt.gt_classes[m])
    # at most k positives a GT, each with its centre inside its GT
    assert torch.bincount(m, minlength=len(gt)).max() <= 13
    assert (ltrb(priors.centers[pos], boxes[m]).amin(dim=1) > 0.01).all()
    # t_hat in (0, 1], and per GT its maximum is the GT's maximum IoU over its positives
    t_hat = r.cls_targets[pos]
    assert (t_hat > 0).all() and (t_hat <= 1).all() and (r.cls_targets[~pos] == 0).all()
    u = pair_iou(transform.apply_deltas(preds.deltas[pos], priors.boxes[pos]), boxes[m])
    max_u = torch.zeros(len(gt)).scatter_reduce(0, m, u, reduce="amax")
    max_t = torch.zeros(len(gt)).scatter_reduce(0, m, t_hat, reduce="amax")
    assert torch.equal(max_t, max_u)
    # the same in chunks of about 20 GTs
    chunked = TaskAlignedAssigner(num_classes=K, box2box_transform=transform, chunk_pairs=20000)
    rc = chunked(priors, gt, predictions=preds)
    assert torch.equal(rc.matched_idxs, r.matched_idxs)
    assert torch.equal(rc.cls_targets, r.cls_targets)


# ------------------------------------------------------------------ 4. PhasedAssigner
def _phased(max_iter=10, fractions=(0.5,), **kwargs):
    return PhasedAssigner(
        num_classes=K,
        phases=[
            ATSSAssigner(num_classes=K, anchor_scale=8.0),
            TaskAlignedAssigner(num_classes=K),
        ],
        switch_fractions=list(fractions),
        max_iter=max_iter,
        **kwargs,
    )


def test_phased_switches_at_the_fraction_of_max_iter():
    priors = make_priors(image_size=(128, 160), strides=(8, 16, 32, 64, 128))
    preds = _random_predictions(priors, DEFAULT_BOX_TRANSFORM, 3)
    gt = _random_gt(6, (128, 160), seed=3, max_wh=80.0)
    p = _phased()
    assert p.prediction_aware and p.switch_iters == [5]
    atss = p.phases[0](priors, gt)
    tal = p.phases[1](priors, gt, predictions=preds)
    assert not torch.equal(atss.labels, tal.labels)
    for start_iter, expected in ((0, 1), (4, 1), (5, 2), (9, 2)):
        with EventStorage(start_iter=start_iter):
            r = p(priors, gt, predictions=preds)
        assert r.stats["phase"] == expected
        ref = atss if expected == 1 else tal
        assert torch.equal(r.labels, ref.labels) and torch.equal(r.matched_idxs, ref.matched_idxs)
        if expected == 1:  # ATSS gives no soft targets: 1 at its positives (hard labels)
            pos = (ref.labels >= 0) & (ref.labels < K)
            assert torch.equal(r.cls_targets, pos.float())
        else:
            assert torch.equal(r.cls_targets, ref.cls_targets)
    # not training: the last phase
    assert p(priors, gt, predictions=preds).stats["phase"] == 2
    # without fill, ATSS's result is left without soft targets
    with EventStorage(start_iter=0):
        assert _phased(fill_cls_targets=None)(priors, gt, predictions=preds).cls_targets is None


def test_phased_three_phases_default_recipe_and_validation():
    three = PhasedAssigner(
        num_classes=K,
        phases=[ATSSAssigner(num_classes=K), ATSSAssigner(num_classes=K, topk=3)],
        switch_fractions=[0.3],
        max_iter=None,
    )
    assert not three.prediction_aware and three.phase() == 2
    p = PhasedAssigner(
        num_classes=K,
        phases=[
            ATSSAssigner(num_classes=K),
            ATSSAssigner(num_classes=K, topk=3),
            TaskAlignedAssigner(num_classes=K),
        ],
        switch_fractions=[0.2, 0.6],
        max_iter=10,
    )
    assert p.switch_iters == [2, 6]
    for it, phase in ((0, 1), (1, 1), (2, 2), (5, 2), (6, 3), (9, 3)):
        with EventStorage(start_iter=it):
            assert p.phase() == phase
    # the registered name alone: TOOD's schedule with default phases (ATSS, then TAL at 1/3)
    default = ASSIGNER_REGISTRY.get("PhasedAssigner")(num_classes=K, max_iter=12)
    assert [type(x).__name__ for x in default.phases] == ["ATSSAssigner", "TaskAlignedAssigner"]
    assert default.switch_iters == [4]
    # the phases are sub-modules (they move and checkpoint with the model)
    assert any(n.startswith("phases.1") for n, _ in default.named_modules())
    for kwargs, key in (
        ({"phases": [], "switch_fractions": []}, "at least one"),
        ({"phases": [ATSSAssigner(num_classes=K)], "switch_fractions": [0.5]}, "switch_fractions"),
        ({"phases": [ATSSAssigner(num_classes=K + 1)], "switch_fractions": []}, "num_classes"),
        ({"phases": ["ATSSAssigner"], "switch_fractions": []}, "assigner module"),
        ({"fill_cls_targets": 2.0}, "fill_cls_targets"),
        (
            {"switch_fractions": [0.8, 0.2], "phases": [TaskAlignedAssigner(num_classes=K)] * 3},
            "non-decreasing",
        ),
    ):
        with pytest.raises(ValueError, match=key):
            PhasedAssigner(num_classes=K, **kwargs)


def test_tood_configs():
    coco = LazyConfig.load(str(REPO / "configs/COCO-Detection/tood_R_50_FPN_1x.py"))
    a = instantiate(coco.model.assigner)
    assert isinstance(a, PhasedAssigner) and a.switch_iters == [30000]  # 4 of 12 epochs of 90k
    atss, tal = a.phases
    assert (type(atss), atss.topk, atss.anchor_scale) == (ATSSAssigner, 9, 8.0)
    assert (tal.topk, tal.alpha, tal.beta, tal.topk_over) == (13, 1.0, 6.0, "inside")
    assert type(tal.box2box_transform).__name__ == "Box2BoxTransformLinear"
    assert tal.box2box_transform.normalize_by_size
    m = coco.model
    assert (m.loss.cls_loss, m.loss.box_weighting, m.loss.box_weight) == (
        "quality_focal",
        "cls_target",
        2.0,
    )
    assert (m.head.quality, m.test_score_fn) == ("none", "cls")
    # the switch follows train.max_iter
    syn = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/tood_R_18_FPN.py"))
    syn = LazyConfig.apply_overrides(syn, ["train.max_iter=12"])
    assert instantiate(syn.model.assigner).switch_iters == [4]
    tal_only = instantiate(LazyConfig.load(str(REPO / "configs/common/models/tal.py")).model)
    assert isinstance(tal_only.assigner, TaskAlignedAssigner)


# ------------------------------------------------------------------ 5. training steps
def _capture(assigner, into):
    """Record (args, kwargs, result) of every call of ``assigner``."""
    assigner.register_forward_hook(
        lambda module, args, kwargs, out: into.append((args, kwargs, out)), with_kwargs=True
    )


def _train_two_steps(cfg, overrides=(), start_iter=0):
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    shrink_model(cfg.model, num_classes=K)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    calls = []
    _capture(model.assigner, calls)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=K)
    for it in range(start_iter, start_iter + 2):
        with EventStorage(start_iter=it):
            losses = model(batch)
        assert losses and all(torch.isfinite(v) for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        head = model.head
        for p in (head.cls_score.weight, head.bbox_pred.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0
        optimizer.step()
    return model, calls


def _check_calls(model, calls):
    tal = model.assigner
    tal = tal.phases[-1] if isinstance(tal, PhasedAssigner) else tal
    assert len(calls) == 4  # 2 iterations x 2 images
    for args, kwargs, r in calls:
        priors, gt = args[0], args[1]
        preds = kwargs["predictions"]
        assert not r.cls_targets.requires_grad
        if r.stats.get("phase", 2) == 2:
            # what the model's assigner decided is the rule on the head's outputs
            detached = _preds(preds.logits.detach(), preds.deltas.detach())
            _assert_same(r, dense_tal(tal, priors, gt, detached))
        assert r.stats["num_pos"] > 0


def test_training_steps_point_model_by_registered_name():
    # FCOS's model (points, (l, t, r, b) x stride), the assigner chosen by name as on the command
    # line (model.assigner=TaskAlignedAssigner): its default decoding is the model's
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/fcos_R_18_FPN.py"))
    cfg.model.assigner = "TaskAlignedAssigner"
    cfg.model.head.bbox_reg_bias = 4.0  # boxes that overlap their GTs from the first step
    model, calls = _train_two_steps(cfg)
    assert isinstance(model.assigner, TaskAlignedAssigner)
    _check_calls(model, calls)


def test_training_steps_anchor_model_A1():
    # RetinaNet #A=1 anchors (the ATSS model: 8 * stride squares, deltas with weights 10, 10, 5, 5)
    # with TOOD's losses; the assigner decodes with the model's transform
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/atss_R_18_FPN.py"))
    cfg.model.assigner = L(TaskAlignedAssigner)(
        num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
    )
    cfg.model.loss.cls_loss = "quality_focal"
    cfg.model.loss.box_weighting = "cls_target"
    model, calls = _train_two_steps(cfg)
    assert set(model.prior_generator.num_cell_anchors) == {1}
    assert type(model.assigner.box2box_transform).__name__ == "Box2BoxTransform"
    _check_calls(model, calls)


def test_training_steps_tood_config_across_the_switch():
    # train.max_iter=3: ATSS at iteration 0, the task-aligned assigner from iteration 1
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/tood_R_18_FPN.py"))
    model, calls = _train_two_steps(cfg, ["train.max_iter=3"])
    assert model.assigner.switch_iters == [1]
    assert [r.stats["phase"] for _, _, r in calls] == [1.0, 1.0, 2.0, 2.0]
    _check_calls(model, calls)

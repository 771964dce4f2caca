"""SimOTA (YOLOX) and the dynamic soft labels (RTMDet): hand-computed cases, the shared dynamic-k
matching on a hand-made pair list, equality with dense references of both rules (kept here) on
random, edge and crowded inputs, training steps on a point and a RetinaNet (#A=1) model, and a
1000-box image."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign.assigners import DynamicSoftLabelAssigner, SimOTAAssigner
from dense_assign.assigners.dynamic_k import dynamic_ks, lowest_cost_k, match_dynamic_k
from dense_assign.box_ops import box_centers, ltrb, pair_iou
from dense_assign.structures import DensePredictions

from ..helpers import (
    REPO,
    jittered_priors,
    load_model_cfg,
    make_instances,
    make_priors,
    points_or_a1_priors,
    random_batch,
    random_deltas_and_logits,
    random_instances,
    retinanet_a1_cfg,
    shrink_model,
    train_steps,
)

K = 2
ASSIGNERS = {"simota": SimOTAAssigner, "dsl": DynamicSoftLabelAssigner}


def _predictions(logits, deltas, quality=None):
    return DensePredictions(logits=logits, deltas=deltas, quality=quality, features=[])


def _positives(r):
    """{prior: GT} of the positives."""
    return {int(i): int(r.matched_idxs[i]) for i in torch.nonzero(r.matched_idxs >= 0).flatten()}


# ---------------------------------------------------------------------------- hand-computed
def _hand_inputs():
    """One level of stride 8 on a 32x32 image: 4x4 points at 4, 12, 20, 28 (index = 4 row + col).
    Every point predicts the square [c - 8, c + 8] (deltas 1 x stride) but point 5 (12, 12), which
    predicts [3, 3, 20, 20] (l = t = 9 = 1.125 x 8). Two classes, logits 0 (p = 1/2) but class 0
    at point 5 (logit 2), 4 (logit 1) and 9 (logit 1)."""
    priors = make_priors(image_size=(32, 32), strides=(8,))
    R = len(priors)
    deltas = torch.ones(R, 4)
    deltas[5] = torch.tensor([1.125, 1.125, 1.0, 1.0])
    logits = torch.zeros(R, K)
    logits[5, 0], logits[4, 0], logits[9, 0] = 2.0, 1.0, 1.0
    return priors, _predictions(logits, deltas)


def _ln_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_simota_hand_case_dynamic_k_costs_and_conflict():
    priors, preds = _hand_inputs()
    # A = [0, 0, 16, 16], B = [8, 8, 24, 24], both class 0
    gt = make_instances([[0, 0, 16, 16], [8, 8, 24, 24]], [0, 0], (32, 32))
    r = SimOTAAssigner(num_classes=K)(priors, gt, predictions=preds)
    # A: centre (8, 8), centre square (-12, 28): points at 4, 12, 20 -> 9 candidates; in the box
    # (and so in both) 4 and 12: points 0, 1, 4, 5. IoUs: 144/368 = 0.3913 at 0, 1, 4;
    # 169/376 = 0.4495 at 5 (box [3, 20]); 48/464 = 0.1034 at 2, 6, 8, 9; 16/496 at 10.
    # k_A = int(0.3913 x 3 + 0.4495 + 0.1034 x 4 + 0.0323) = int(2.069) = 2.
    ln2 = math.log(2)
    cls = {5: -_ln_sigmoid(2.0) + ln2, 4: -_ln_sigmoid(1.0) + ln2, 0: 2 * ln2, 1: 2 * ln2}
    iou_a = {0: 144 / 368, 1: 144 / 368, 4: 144 / 368, 5: 169 / 376}
    cost_a = {j: cls[j] - 3 * math.log(iou_a[j]) for j in cls}
    assert sorted(cost_a, key=cost_a.get)[:2] == [5, 4]  # 3.219, 3.821 (0, 1: 4.201)
    # B: centre (16, 16), square (-4, 36) holds every point; in the box 12, 20: points 5, 6, 9, 10.
    # IoUs 144/368 at 6, 9, 10; 144/401 = 0.3591 at 5 (box [3, 20] in [8, 24]); 48/464 at the 8
    # edge points; 16/496 at the corners. k_B = int(0.3913 x 3 + 0.3591 + 0.1034 x 6) = 2.
    cls_b = {5: cls[5], 6: 2 * ln2, 9: cls[4], 10: 2 * ln2}
    iou_b = {5: 144 / 401, 6: 144 / 368, 9: 144 / 368, 10: 144 / 368}
    cost_b = {j: cls_b[j] - 3 * math.log(iou_b[j]) for j in cls_b}
    assert sorted(cost_b, key=cost_b.get)[:2] == [9, 5]  # 3.821, 3.892 (6, 10: 4.201)
    # point 5 is taken by both: A's cost 3.219 < B's 3.892, A keeps it; B is left with 9 alone
    assert _positives(r) == {4: 0, 5: 0, 9: 1}
    assert r.stats["dynamic_k_mean"].item() == 2.0
    expected = {4: 144 / 368, 5: 169 / 376, 9: 144 / 368}
    for j, v in expected.items():
        assert r.cls_targets[j].item() == pytest.approx(v, abs=1e-6)
    assert r.labels.tolist().count(0) == 3 and r.labels.tolist().count(K) == 13


def test_simota_hand_case_outside_penalty_and_objectness():
    priors, preds = _hand_inputs()
    # a box 3 px wide, class 1: no point strictly inside it, so every candidate pays the 1e5
    # penalty; its centre square (10.5 +- 20) holds all 16 points. IoUs of [c - 8, c + 8] with
    # [9, 9, 12, 12] (area 9): 9/256 at points 0, 1, 4 (which cover the box), 9/289 at 5
    # ([3, 20]), 0 elsewhere -> k = int(0.136) -> 1.
    gt = make_instances([[9, 9, 12, 12]], [1], (32, 32))
    r = SimOTAAssigner(num_classes=K)(priors, gt, predictions=preds)
    # class cost -log p1 - log(1 - p0): 2 ln 2 at 0 and 1, more at 4 (class-0 logit 1); points 0
    # and 1 tie on cost: the lowest index, 0, wins
    assert _positives(r) == {0: 0}
    assert r.cls_targets[0].item() == pytest.approx(9 / 256, abs=1e-7)
    # point 1 confident in class 1: cost -log sigmoid(3) - log(1 - sigmoid(-3)) = 0.10 -> it wins
    logits = preds.logits.clone()
    logits[1] = torch.tensor([-3.0, 3.0])
    r = SimOTAAssigner(num_classes=K)(priors, gt, predictions=_predictions(logits, preds.deltas))
    assert _positives(r) == {1: 0}
    # with objectness (YOLOX): p = sqrt(sigmoid(cls) x sigmoid(obj)); objectness -6 at point 1
    # gives p1 = sqrt(0.9526 x 0.0025) = 0.0485, a cost of 3.04 against 2 ln 2 = 1.39 at point 0
    # (objectness 0: p = 1/2 for both classes)
    quality = torch.zeros(len(priors), 1)
    quality[1] = -6.0
    p1 = math.sqrt(1 / (1 + math.exp(-3.0)) / (1 + math.exp(6.0)))
    p0 = math.sqrt(1 / (1 + math.exp(3.0)) / (1 + math.exp(6.0)))
    assert -math.log(p1) - math.log(1 - p0) == pytest.approx(3.0365, abs=1e-4)
    preds_obj = _predictions(logits, preds.deltas, quality)
    r = SimOTAAssigner(num_classes=K, objectness=True)(priors, gt, predictions=preds_obj)
    assert _positives(r) == {0: 0}
    with pytest.raises(ValueError, match="objectness"):
        SimOTAAssigner(num_classes=K, objectness=True)(priors, gt, predictions=preds)


def test_dsl_hand_case_soft_costs_and_centre_prior():
    priors, preds = _hand_inputs()
    logits = preds.logits.clone()
    logits[10, 1] = 2.0
    logits[14, 1] = -1.0
    preds = _predictions(logits, preds.deltas)
    # A = [0, 0, 16, 16] class 0, B = [8, 8, 32, 32] class 1
    gt = make_instances([[0, 0, 16, 16], [8, 8, 32, 32]], [0, 1], (32, 32))
    r = DynamicSoftLabelAssigner(num_classes=K)(priors, gt, predictions=preds)

    def qfl(x, y):  # BCE-with-logits(x, y) x |y - sigmoid(x)|^2
        s = 1 / (1 + math.exp(-x))
        return (math.log1p(math.exp(x)) - x * y) * (y - s) ** 2

    def cost(j, x, cls, iou, d):
        other = 1 - cls
        return (
            qfl(x[j][cls], iou) + qfl(x[j][other], 0.0) - 3 * math.log(iou + 1e-7) + 10 ** (d - 3)
        )

    x = logits.tolist()
    # A: inside points 0, 1, 4, 5 (all at distance sqrt(32) / 8 of (8, 8)); IoUs 144/368 and
    # 169/376 at 5 -> k_A = int(1.623) = 1; point 5 has the lowest cost (3.10 vs 3.5-3.6)
    d = math.sqrt(32) / 8
    iou_a = {0: 144 / 368, 1: 144 / 368, 4: 144 / 368, 5: 169 / 376}
    cost_a = {j: cost(j, x, 0, v, d) for j, v in iou_a.items()}
    assert min(cost_a, key=cost_a.get) == 5
    # B: inside points at 12, 20, 28 (9 of them), centre (20, 20). IoUs with [c-8, c+8] (area 576):
    # 256/576 at 10 (d = 0), 192/640 at 6, 9, 11, 14 (d = 1), 144/688 at 7, 13, 15 (d = sqrt 2),
    # 144/721 at 5 ([3, 20]) -> k_B = int(0.444 + 1.2 + 0.628 + 0.200) = int(2.472) = 2
    iou_b = {10: 256 / 576, 6: 0.3, 9: 0.3, 11: 0.3, 14: 0.3}
    iou_b.update({7: 144 / 688, 13: 144 / 688, 15: 144 / 688, 5: 144 / 721})
    dist_b = {10: 0.0, 6: 1.0, 9: 1.0, 11: 1.0, 14: 1.0, 7: 2**0.5, 13: 2**0.5, 15: 2**0.5}
    dist_b[5] = 2**0.5
    cost_b = {j: cost(j, x, 1, v, dist_b[j]) for j, v in iou_b.items()}
    # 10: 2.843 (its logit 2 overshoots the soft label 0.444: scale 0.19); 14: 3.796 (logit -1
    # is close to its label 0.3) beats 6, 9, 11 at 3.823
    assert sorted(cost_b, key=cost_b.get)[:2] == [10, 14]
    assert _positives(r) == {5: 0, 10: 1, 14: 1}
    assert r.stats["dynamic_k_mean"].item() == 1.5
    for j, v in {5: 169 / 376, 10: 256 / 576, 14: 0.3}.items():
        assert r.cls_targets[j].item() == pytest.approx(v, abs=1e-6)
    assert r.labels[5].item() == 0 and r.labels[10].item() == 1 and r.labels[14].item() == 1
    # a GT with no point strictly inside it has no candidate: no positive
    tiny = make_instances([[9, 9, 11, 11]], [0], (32, 32))
    assert (
        _positives(DynamicSoftLabelAssigner(num_classes=K)(priors, tiny, predictions=preds)) == {}
    )


def test_dynamic_k_matching_on_a_pair_list():
    # GT 0: candidates 0..4, IoUs summing (top 3) to 2.4 -> k 2; GT 1: candidates 1, 2, 5 with
    # small IoUs -> k 1; GT 2: candidates 2, 3 with IoUs 0.9 + 0.6 -> k 1 (top 3 of 2 pairs)
    g = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    p = torch.tensor([0, 1, 2, 3, 4, 1, 2, 5, 2, 3])
    iou = torch.tensor([0.5, 0.8, 0.9, 0.7, 0.1, 0.2, 0.3, 0.1, 0.9, 0.6])
    cost = torch.tensor([5.0, 1.0, 2.0, 2.0, 9.0, 0.5, 3.0, 4.0, 1.0, 3.0], dtype=torch.float64)
    ks = dynamic_ks(g, iou, 3, topq=3)
    assert ks.tolist() == [2, 1, 1]
    # GT 0 takes 1 and then 2 (cost 2 tied with 3: the lower prior index); GT 1 takes 1; GT 2 2
    take = lowest_cost_k(g, cost, ks)
    assert sorted(zip(g[take].tolist(), p[take].tolist())) == [(0, 1), (0, 2), (1, 1), (2, 2)]
    # prior 1: GT 1 (0.5) beats GT 0 (1.0); prior 2: GT 2 (1.0) beats GT 0 (2.0)
    matched, k, has = match_dynamic_k([(g, p, iou, cost)], 3, 6, 3, "cpu")
    assert matched.tolist() == [-1, 1, 2, -1, -1, -1]
    assert k.tolist() == [2, 1, 1] and has.tolist() == [True, True, True]
    # equal costs at a prior go to the lowest GT index; chunks of whole GTs give the same
    cost2 = cost.clone()
    cost2[8] = 2.0  # GT 2 at prior 2 now ties GT 0
    one, _, _ = match_dynamic_k([(g, p, iou, cost2)], 3, 6, 3, "cpu")
    parts = [(g[i], p[i], iou[i], cost2[i]) for i in (slice(8, 10), slice(0, 5), slice(5, 8))]
    chunked, _, _ = match_dynamic_k(parts, 3, 6, 3, "cpu")
    assert one.tolist() == chunked.tolist() == [-1, 1, 0, -1, -1, -1]


@pytest.mark.parametrize("block", [1 << 20, 40])
def test_dynamic_ks_equals_a_loop_over_gts(monkeypatch, block):
    # shuffled pairs of 25 GTs (runs of 0-60), IoU ties, zeros and NaN; a block of 40 elements
    # groups the GTs by run length. k from a per-GT loop: the sum, in float64 from the largest
    # down, of the q largest nonzero IoUs; the bound is valid (the k-th lowest cost does not
    # exceed it) and is a cost of the GT's nonzero-IoU pairs, +inf only for want of an overlap
    from dense_assign.assigners import candidates

    monkeypatch.setattr(candidates, "RUN_BLOCK", block)
    g = torch.Generator().manual_seed(0)
    num_gt, topq = 25, 10
    counts = torch.randint(0, 60, (num_gt,), generator=g)
    counts[[2, 7]] = 0
    gt_idx = torch.repeat_interleave(torch.arange(num_gt), counts)
    iou = torch.randint(0, 8, (len(gt_idx),), generator=g).float() / 7  # ties, zeros, ones
    iou[::13] = math.nan
    iou[gt_idx == 4] = 0.0  # a GT without overlap: k 1, bound +inf
    cost = torch.rand(len(gt_idx), generator=g, dtype=torch.float64)
    perm = torch.randperm(len(gt_idx), generator=g)
    gt_idx, iou, cost = gt_idx[perm], iou[perm], cost[perm]
    ks, bound = dynamic_ks(gt_idx, iou, num_gt, topq, cost)
    assert torch.equal(ks, dynamic_ks(gt_idx, iou, num_gt, topq))
    for m in range(num_gt):
        mine = gt_idx == m
        v = iou[mine].nan_to_num(nan=0.0).double()
        total = 0.0
        for x in v.sort(descending=True).values[:topq].tolist():
            total += x
        assert ks[m].item() == max(1, math.floor(total)), m
        c = cost[mine]
        if total < 1:
            assert bound[m].item() == math.inf, m
        else:
            assert c.sort().values[ks[m] - 1] <= bound[m] and bound[m] in c[v > 0].tolist(), m
    assert ks[4].item() == 1 and bound[4].item() == math.inf and (ks > 1).any()


# ---------------------------------------------------------------------------- dense references
def _dense_match(cand, iou, cost, topq):
    """The dynamic-k rule on (M, R) matrices, with a loop over GTs: k from the top-q candidate
    IoUs, each GT's k lowest costs (stable sort: lowest prior on ties), per prior the lowest cost
    among the GTs that took it (the first GT on ties)."""
    M, R = cand.shape
    top = torch.where(cand, iou.double(), torch.zeros_like(iou, dtype=torch.float64))
    ks = top.topk(min(topq, R), dim=1).values.sum(dim=1).floor().long().clamp(min=1)
    chosen = torch.zeros(M, R, dtype=torch.bool)
    for m in range(M):
        idx = cand[m].nonzero().squeeze(1)
        order = torch.sort(cost[m, idx], stable=True).indices
        chosen[m, idx[order[: int(ks[m])]]] = True
    c = torch.where(chosen, cost, torch.full_like(cost, math.inf))
    is_best = chosen & (c == c.min(dim=0).values[None])
    matched = torch.where(chosen.any(dim=0), is_best.long().argmax(dim=0), -1)
    return matched, ks[cand.any(dim=1)]


def dense_simota(a: SimOTAAssigner, priors, gt, preds):
    boxes, classes = gt.gt_boxes.tensor, gt.gt_classes
    M, R = len(boxes), len(priors)
    pred = a.decode_boxes(preds.deltas, priors.boxes)
    points = priors.centers[None]
    in_box = ltrb(points, boxes[:, None]).min(dim=-1).values > 0
    c = box_centers(boxes)[:, None]
    radius = (a.center_radius * priors.strides)[None, :, None]
    in_ctr = ltrb(points, torch.cat([c - radius, c + radius], dim=-1)).min(dim=-1).values > 0
    iou = pair_iou(pred[None], boxes[:, None])
    # the class terms in float32 (as YOLOX), summed in float64
    p = preds.logits.float().sigmoid()
    if a.objectness:
        p = torch.sqrt(p * preds.quality.float().sigmoid())
    onehot = F.one_hot(classes, p.shape[1]).float()
    bce = F.binary_cross_entropy(
        p[None].expand(M, R, -1), onehot[:, None].expand(M, R, -1), reduction="none"
    ).sum(dim=-1, dtype=torch.float64)
    cost = (
        a.cls_weight * bce
        - a.iou_weight * torch.log(iou.double() + 1e-8)
        + 1e5 * (~(in_box & in_ctr)).double()
    )
    return _dense_match(in_box | in_ctr, iou, cost, a.topq) + (pred,)


def dense_dsl(a: DynamicSoftLabelAssigner, priors, gt, preds):
    boxes, classes = gt.gt_boxes.tensor, gt.gt_classes
    M, R = len(boxes), len(priors)
    pred = a.decode_boxes(preds.deltas, priors.boxes)
    in_box = ltrb(priors.centers[None], boxes[:, None]).min(dim=-1).values > 0
    iou = pair_iou(pred[None], boxes[:, None])
    # the class terms in float32 (as mmdetection), summed in float64
    x = preds.logits.float()[None].expand(M, R, -1)
    soft = F.one_hot(classes, x.shape[-1]).float()[:, None] * iou[..., None]
    cls_cost = F.binary_cross_entropy_with_logits(x, soft, reduction="none")
    cls_cost = (cls_cost * (soft - x.sigmoid()).abs().pow(2)).sum(dim=-1, dtype=torch.float64)
    d = (priors.centers.double()[None] - box_centers(boxes.double())[:, None]).norm(dim=-1)
    prior = torch.pow(10.0, d / priors.strides.double()[None] - a.soft_center_radius)
    cost = cls_cost - a.iou_weight * torch.log(iou.double() + 1e-7) + prior
    return _dense_match(in_box, iou, cost, a.topq) + (pred,)


DENSE = {"simota": dense_simota, "dsl": dense_dsl}


def _check_equal(name, a, priors, gt, preds):
    r = a(priors, gt, predictions=preds)
    matched, ks, pred = DENSE[name](a, priors, gt, preds)  # ks: of the GTs with a candidate
    assert torch.equal(
        r.matched_idxs, matched
    ), f"{int((r.matched_idxs != matched).sum())} priors differ"
    pos = matched >= 0
    assert torch.equal(r.labels[pos], gt.gt_classes[matched[pos]])
    assert (r.labels[~pos] == a.num_classes).all()
    iou = pair_iou(pred[pos], gt.gt_boxes.tensor[matched[pos]])
    assert torch.equal(r.cls_targets[pos], iou)
    assert (r.cls_targets[~pos] == 0).all()
    if len(ks):
        assert r.stats["dynamic_k_mean"].item() == pytest.approx(ks.double().mean().item())
    return r


# ---------------------------------------------------------------------------- priors and inputs
def _random_gt(n, size, seed, min_wh=2.0, max_wh=120.0, num_classes=K):
    return random_instances(n, size, seed, min_wh, max_wh, num_classes)


def _random_predictions(priors, seed, anchors=False, num_classes=K):
    return _predictions(*random_deltas_and_logits(priors, seed, anchors, num_classes, quality=True))


def _assigner(name, b2b=None, num_classes=K, **kwargs):
    return ASSIGNERS[name](num_classes=num_classes, box2box_transform=b2b, **kwargs)


CASES = [("simota", "simota"), ("dsl", "dsl"), ("simota", "retina_a1"), ("dsl", "retina_a1")]


@pytest.mark.parametrize("name,prior_kind", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_dense_reference_random(name, prior_kind, seed):
    size = (160, 224)
    priors, b2b = points_or_a1_priors(prior_kind, size)
    gt = _random_gt(12, size, seed)
    preds = _random_predictions(priors, seed, anchors=b2b is not None)
    r = _check_equal(name, _assigner(name, b2b), priors, gt, preds)
    assert (r.matched_idxs >= 0).sum() >= 12


def test_simota_objectness_equals_dense_reference():
    priors, _ = points_or_a1_priors("simota", (160, 224))
    gt = _random_gt(12, (160, 224), 5)
    _check_equal(
        "simota", _assigner("simota", objectness=True), priors, gt, _random_predictions(priors, 5)
    )


@pytest.mark.parametrize("name", ["simota", "dsl"])
def test_equals_dense_reference_edge_cases(name):
    size = (96, 128)
    priors, _ = points_or_a1_priors(name, size)
    boxes = [
        [0, 0, 128, 96],  # the whole image
        [0, 0, 9, 7],  # corner, smaller than two strides
        [120, 88, 128, 96],  # opposite corner
        [50, 40, 50, 60],  # zero width
        [30, 30, 31, 31.5],  # tiny, between points
        [60, 20, 90, 50],  # duplicate boxes, same class
        [60, 20, 90, 50],
        [60, 20, 90, 50],  # and another class
        [-20, 70, 20, 110],  # partly outside the image
        [200, 200, 260, 260],  # outside the image
        [8.0, 8.0, 24.0, 24.0],  # edges on point rows (offset 0.5: 4, 12, 20; offset 0: 0, 8, 16)
        [4.0, 4.0, 36.0, 36.0],
    ]
    gt = make_instances(boxes, [0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0], size)
    a = _assigner(name)
    for preds in (
        _random_predictions(priors, 3),
        # constant predictions: every cost ties with many others (the tie-breaking rules)
        _predictions(torch.zeros(len(priors), K), torch.ones(len(priors), 4)),
    ):
        _check_equal(name, a, priors, gt, preds)


@pytest.mark.parametrize("name", ["simota", "dsl"])
def test_equals_dense_reference_crowded_and_chunked(name):
    size = (256, 320)
    priors, _ = points_or_a1_priors(name, size)
    gt = _random_gt(300, size, seed=7, min_wh=3.0, max_wh=60.0)
    preds = _random_predictions(priors, 7)
    r = _check_equal(name, _assigner(name), priors, gt, preds)
    # chunks of a few GTs each give the same result
    small = _assigner(name, chunk_pairs=2000)(priors, gt, predictions=preds)
    assert torch.equal(small.matched_idxs, r.matched_idxs)
    assert torch.equal(small.cls_targets, r.cls_targets)


@pytest.mark.parametrize("name", ["simota", "dsl"])
def test_equals_dense_reference_without_a_grid(name):
    # jittered points: not a grid, every (GT, prior) pair is a candidate pair (AllPairs)
    priors = jittered_priors(image_size=(64, 96), strides=(8, 16), jitter=3.0, seed=0)
    gt = _random_gt(10, (64, 96), seed=4, max_wh=40.0)
    _check_equal(
        name,
        _assigner(name, chunk_pairs=len(priors) * 3),
        priors,
        gt,
        _random_predictions(priors, 4),
    )


def test_predictions_are_data_and_validation():
    priors, preds = _hand_inputs()
    logits = preds.logits.clone().requires_grad_(True)
    deltas = preds.deltas.clone().requires_grad_(True)
    gt = make_instances([[0, 0, 16, 16]], [0], (32, 32))
    for cls in (SimOTAAssigner, DynamicSoftLabelAssigner):
        r = cls(num_classes=K)(priors, gt, predictions=_predictions(logits, deltas))
        assert not r.cls_targets.requires_grad and r.cls_targets.sum() > 0
        with pytest.raises(ValueError, match="prediction-aware"):
            cls(num_classes=K)(priors, gt)
    with pytest.raises(ValueError):
        SimOTAAssigner(num_classes=K, center_radius=0)
    with pytest.raises(ValueError):
        SimOTAAssigner(num_classes=K, candidate_topk=0)
    with pytest.raises(ValueError):
        DynamicSoftLabelAssigner(num_classes=K, iou_weight=-1)


# ---------------------------------------------------------------------------- 1000 boxes
@pytest.mark.parametrize("name", ["simota", "dsl"])
def test_thousand_boxes_on_800x1333(name):
    size = (800, 1333)
    priors, _ = points_or_a1_priors(name, size)
    gt = _random_gt(1000, size, seed=11, min_wh=4.0, max_wh=80.0, num_classes=80)
    preds = _random_predictions(priors, 11, num_classes=80)
    a = _assigner(name, num_classes=80)
    r = a(priors, gt, predictions=preds)
    pos = r.matched_idxs >= 0
    assert int(pos.sum()) > 1000
    assert torch.equal(r.labels[pos], gt.gt_classes[r.matched_idxs[pos]])
    pred = a.decode_boxes(preds.deltas, priors.boxes)
    assert torch.equal(
        r.cls_targets[pos], pair_iou(pred[pos], gt.gt_boxes.tensor[r.matched_idxs[pos]])
    )
    # no GT has more positives than its k
    per_gt = torch.zeros(1000, dtype=torch.long).index_add_(
        0, r.matched_idxs[pos], torch.ones_like(r.matched_idxs[pos])
    )
    assert int(per_gt.max()) <= a.topq


# ---------------------------------------------------------------------------- training
def _model_cfg(name, family):
    cfg = load_model_cfg(f"configs/common/models/{name}.py") if family == "points" else None
    if family == "retina_a1":
        cfg = retinanet_a1_cfg()
        cfg.assigner = L(ASSIGNERS[name])(
            num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
        )
        cfg.loss.cls_loss = "quality_focal"
    return shrink_model(cfg, num_classes=3)


@pytest.mark.parametrize("family", ["points", "retina_a1"])
@pytest.mark.parametrize("name", ["simota", "dsl"])
def test_two_training_steps(name, family):
    torch.manual_seed(0)
    model = instantiate(_model_cfg(name, family))
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=3, seed=1)
    for _, latest in train_steps(model, batch):
        # every image's GTs get positives; k >= 1 and the soft targets are IoUs in (0, 1]
        assert latest["num_pos_anchors"] >= 4
        assert latest["assigner/dynamic_k_mean"] >= 1
        assert 0 < latest["assigner/pos_iou_mean"] <= 1


@pytest.mark.parametrize("name", ["SimOTAAssigner", "DynamicSoftLabelAssigner"])
def test_assigner_by_name_on_the_fcos_config(name):
    # model.assigner=<name> on the command line: built from the registry with the default (point)
    # decoding, trained with the FCOS loss (focal loss towards the soft targets)
    cfg = shrink_model(load_model_cfg("configs/common/models/fcos.py"))
    cfg.assigner = name
    torch.manual_seed(0)
    model = instantiate(cfg).train()
    assert type(model.assigner).__name__ == name
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=3, seed=2)
    with EventStorage() as storage:
        losses = model(batch)
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert storage.latest()["num_pos_anchors"][0] >= 2
    assert model.head.cls_score.weight.grad.abs().sum() > 0


def test_config_files():
    # the packaged configs of both methods load; the model's assigner decodes as the model does
    for name in ("simota", "dsl"):
        for folder in ("Synthetic-Detection", "Synthetic-Converge", "COCO-Detection"):
            suffix = "R_50_FPN_1x" if folder == "COCO-Detection" else "R_18_FPN"
            cfg = LazyConfig.load(str(REPO / "configs" / folder / f"{name}_{suffix}.py"))
            assert cfg.model.assigner.box2box_transform == cfg.model.box2box_transform
            assert cfg.model.loss.cls_loss == "quality_focal"
            assert cfg.train.output_dir.endswith(f"{name}_{suffix}")
        model = instantiate(shrink_model(load_model_cfg(f"configs/common/models/{name}.py")))
        assert isinstance(model.assigner.box2box_transform, Box2BoxTransformLinear)
        assert isinstance(model.box2box_transform, Box2BoxTransformLinear)

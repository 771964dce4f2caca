"""OTA: the log-space Sinkhorn on pair lists (closed-form and hand-solved transport problems, a dense
reference on random pair lists, the marginals), hand-computed assignments, equality with a dense
reference of the official rule (kept here) on random, edge, crowded and off-grid inputs, training
steps on a point and a RetinaNet (#A=1) model, and the packaged configs."""

import math

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss

import dense_assign.modeling  # noqa: F401  (registers every assigner)
from dense_assign.assigners import OTAAssigner
from dense_assign.assigners.ota import OUTSIDE_COST, log_sinkhorn
from dense_assign.box_ops import pair_iou
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
F64 = torch.float64


def _predictions(logits, deltas, quality=None):
    return DensePredictions(logits=logits, deltas=deltas, quality=quality, features=[])


def _positives(r):
    """{prior: GT} of the positives."""
    return {int(i): int(r.matched_idxs[i]) for i in torch.nonzero(r.matched_idxs >= 0).flatten()}


# ---------------------------------------------------------------------------- dense Sinkhorn
def dense_sinkhorn(cost, mu, eps, iters):
    """The official ``SinkhornDistance`` iterations on a dense (S, D) cost (the last row the
    background), every demander of one unit, in float64 and without the 1e-8 inside the logs:
    potentials u (rows) and v (columns) started at 1, v updated before u (the official update
    v = eps (log 1 - logsumexp((-C + u + v) / eps)) + v, with the v inside cancelled out).
    Returns the log plan (-C + u + v) / eps."""
    scaled = cost / eps
    u = torch.ones(cost.shape[0], dtype=F64)
    v = torch.ones(cost.shape[1], dtype=F64)
    for _ in range(iters):
        v = -eps * torch.logsumexp((u / eps)[:, None] - scaled, dim=0)
        u = eps * (torch.log(mu) - torch.logsumexp((v / eps)[None] - scaled, dim=1))
    return (u / eps)[:, None] + (v / eps)[None] - scaled


def _sparse_vs_dense(num_gt, num_cols, num_outside, density, seed, eps=0.1, iters=50):
    """Random pair lists (some GTs without pairs), solved sparse and dense."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(num_gt, num_cols, generator=g) < density
    mask[0] = False  # a GT without pairs
    gt_idx, col_idx = mask.nonzero(as_tuple=True)
    cost = torch.rand(len(gt_idx), generator=g, dtype=F64) * 5
    bg_cost = torch.rand(num_cols, generator=g, dtype=F64) * 2
    supply = torch.randint(1, 4, (num_gt,), generator=g).double() * mask.any(dim=1)
    bg_supply = torch.tensor(num_cols + num_outside - supply.sum().item(), dtype=F64)
    sparse = log_sinkhorn(
        gt_idx, col_idx, cost, bg_cost, supply, bg_supply, num_outside, eps, iters
    )
    # dense: the GTs with pairs, the background; the outside columns at any background cost
    rows = mask.any(dim=1)
    dense_cost = torch.full((num_gt, num_cols), math.inf, dtype=F64)
    dense_cost[gt_idx, col_idx] = cost
    outside_cost = torch.rand(num_outside, generator=g, dtype=F64) * 3
    C = torch.cat(
        [
            torch.cat([dense_cost[rows], torch.full((int(rows.sum()), num_outside), math.inf)], 1),
            torch.cat([bg_cost, outside_cost])[None],
        ]
    )
    mu = torch.cat([supply[rows], bg_supply[None]])
    dense = dense_sinkhorn(C, mu, eps, iters)
    row_of = torch.cumsum(rows.long(), 0) - 1
    return sparse, dense, (gt_idx, col_idx, row_of, num_cols)


@pytest.mark.parametrize("seed,num_outside", [(0, 0), (1, 7), (2, 40)])
def test_log_sinkhorn_equals_dense_iterations(seed, num_outside):
    (log_plan, log_bg, log_out), dense, (g, c, row_of, J) = _sparse_vs_dense(
        6, 30, num_outside, 0.3, seed
    )
    assert torch.allclose(log_plan, dense[row_of[g], c], rtol=0, atol=1e-9)
    assert torch.allclose(log_bg, dense[-1, :J], rtol=0, atol=1e-9)
    if num_outside:
        assert torch.allclose(log_out.expand(num_outside), dense[-1, J:], rtol=0, atol=1e-9)


def test_log_sinkhorn_two_by_two_closed_form():
    # a GT and the background, one unit each, two priors: the entropic plan is [[p, 1 - p],
    # [1 - p, p]] with p^2 / (1 - p)^2 = exp(-(C00 + C11 - C01 - C10) / eps); costs GT (1, 2),
    # background (2, 1): Delta = -2, p = 1 / (1 + exp(Delta / (2 eps)))
    g, c = torch.tensor([0, 0]), torch.tensor([0, 1])
    cost = torch.tensor([1.0, 2.0], dtype=F64)
    bg = torch.tensor([2.0, 1.0], dtype=F64)
    one = torch.ones(1, dtype=F64)
    for eps in (1.0, 0.5):
        p = 1 / (1 + math.exp(-2 / (2 * eps)))
        log_plan, log_bg, _ = log_sinkhorn(g, c, cost, bg, one, one[0], 0, eps, 60)
        assert log_plan.exp().tolist() == pytest.approx([p, 1 - p], abs=1e-12)
        assert log_bg.exp().tolist() == pytest.approx([1 - p, p], abs=1e-12)
        # three demanders nobody but the background serves: they take 3 units of its supply,
        # each exactly one in the limit, and the 2 x 2 part is unchanged
        log_plan, log_bg, log_out = log_sinkhorn(g, c, cost, bg, one, one[0] + 3, 3, eps, 60)
        assert log_plan.exp().tolist() == pytest.approx([p, 1 - p], abs=1e-12)
        assert log_out.exp().item() == pytest.approx(1.0, abs=1e-12)


def test_log_sinkhorn_small_eps_approaches_the_optimal_transport_plan():
    # GTs A, B (one unit each) and the background (one unit + two outside demanders) over priors
    # 0, 1, 2; A cannot serve prior 2 (no pair):
    #        0     1     2
    #   A   1.0   2.0    -
    #   B   1.5   4.0   2.0
    #   bg  3.0   2.5   1.0
    # Each prior takes one whole unit at the optimum, a permutation: A0 B1 bg2 = 6, A0 bg1 B2 =
    # 5.5, B0 A1 bg2 = 4.5, bg0 A1 B2 = 7 (the others use A2). The optimum gives prior 0, the
    # cheapest for both GTs, to B: A is cheaper at 1 than B.
    g = torch.tensor([0, 0, 1, 1, 1])
    c = torch.tensor([0, 1, 0, 1, 2])
    cost = torch.tensor([1.0, 2.0, 1.5, 4.0, 2.0], dtype=F64)
    bg = torch.tensor([3.0, 2.5, 1.0], dtype=F64)
    supply, bg_supply = torch.ones(2, dtype=F64), torch.tensor(3.0, dtype=F64)
    eps = 0.05
    log_plan, log_bg, log_out = log_sinkhorn(g, c, cost, bg, supply, bg_supply, 2, eps, 5000)
    plan, plan_bg = log_plan.exp(), log_bg.exp()
    # any plan exp((f + g - C) / eps) has, around the cycle A0 bg1 B2 / B0 A1 bg2 (cost 5.5 -
    # 4.5 = 1), a product ratio of exp(-1 / eps): its entries off the optimum are about
    # exp(-1 / (3 eps)) = 1.3e-3 at convergence
    cycle = log_plan[0] + log_bg[1] + log_plan[4] - log_plan[2] - log_plan[1] - log_bg[2]
    assert cycle.item() == pytest.approx(-1 / eps, abs=1e-9)
    assert plan.tolist() == pytest.approx([0, 1, 1, 0, 0], abs=2e-3)
    assert plan_bg.tolist() == pytest.approx([0, 0, 1], abs=2e-3)
    assert log_out.exp().item() == pytest.approx(1, abs=1e-6)
    # marginals: the rows exactly (the last update), the columns at convergence
    rows = torch.zeros(2, dtype=F64).index_add_(0, g, plan)
    assert rows.tolist() == pytest.approx([1, 1], abs=1e-12)
    assert (plan_bg.sum() + 2 * log_out.exp()).item() == pytest.approx(3, abs=1e-12)
    cols = plan_bg.index_add(0, c, plan)
    assert cols.tolist() == pytest.approx([1, 1, 1], abs=1e-7)
    # at the official eps 0.1 and 50 iterations the plan is softer; the largest entries are
    # still the optimum's
    log_plan, log_bg, _ = log_sinkhorn(g, c, cost, bg, supply, bg_supply, 2, 0.1, 50)
    plan = log_plan.exp()
    assert 0.9 < plan[1].item() < 1 and 0.9 < plan[2].item() < 1 and log_bg.exp()[2] > 0.9


# ---------------------------------------------------------------------------- hand cases
def _hand_inputs():
    """One level of stride 8 on a 32x32 image: 4x4 points at 4, 12, 20, 28 (index = 4 row + col).
    Every point predicts the square [c - 8, c + 8] (deltas 1 x stride) but point 5 (12, 12), which
    predicts [3, 3, 20, 20]. Two classes, logits 0 but class 0 at point 5 (2), 4 (1), 9 (1)."""
    priors = make_priors(image_size=(32, 32), strides=(8,))
    R = len(priors)
    deltas = torch.ones(R, 4)
    deltas[5] = torch.tensor([1.125, 1.125, 1.0, 1.0])
    logits = torch.zeros(R, K)
    logits[5, 0], logits[4, 0], logits[9, 0] = 2.0, 1.0, 1.0
    return priors, _predictions(logits, deltas)


def _focal(x, y):
    p = 1 / (1 + math.exp(-x))
    if y == 1:
        return 0.25 * (1 - p) ** 2 * -math.log(p)
    return 0.75 * p**2 * -math.log(1 - p)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.25, 1.5)])
def test_focal_against_a_constant_is_fvcores_to_the_last_bit(alpha, gamma):
    a = OTAAssigner(num_classes=K, focal_alpha=alpha, focal_gamma=gamma)
    g = torch.Generator().manual_seed(0)
    extreme = [0.0, -0.0, 1e-30, -1e-30, 17.0, -17.0, 88.7, -88.7, 104.0, -104.0, 1e10, -1e10]
    x = torch.cat(
        [
            torch.randn(20000, generator=g) * 4,
            torch.randn(20000, generator=g) * 40,
            torch.tensor(extreme + [math.inf, -math.inf, math.nan]),
        ]
    ).view(-1, 5)
    for target in (0.0, 1.0):
        ref = sigmoid_focal_loss(x, torch.full_like(x, target), alpha=alpha, gamma=gamma)
        assert torch.equal(a.focal(x, target).nan_to_num(nan=-1.0), ref.nan_to_num(nan=-1.0))


def test_hand_case_global_choice():
    priors, preds = _hand_inputs()
    # A = [0, 0, 16, 16], B = [8, 8, 24, 24], both class 0. Centre squares of half-side 20 hold
    # every point, so "in both" = in the box by 0.01: A: points 0, 1, 4, 5; B: 5, 6, 9, 10.
    gt = make_instances([[0, 0, 16, 16], [8, 8, 24, 24]], [0, 0], (32, 32))
    a = OTAAssigner(num_classes=K)
    r = a(priors, gt, predictions=preds)
    plan, _ = a.transport(priors, gt, preds)
    assert list(zip(plan.gt_idx.tolist(), plan.prior_idx.tolist())) == [
        (0, 0), (0, 1), (0, 4), (0, 5), (1, 5), (1, 6), (1, 9), (1, 10)
    ]  # fmt: skip
    # IoUs: 144/368 at A's 0, 1, 4 and B's 6, 9, 10; 169/376 at A's 5, 144/401 at B's 5;
    # k = int(3 x 0.391 + 0.450) = int(1.623) = 1 and int(3 x 0.391 + 0.359) = 1
    assert plan.supply.tolist() == [1.0, 1.0] and plan.bg_supply.item() == 14
    # with one unit per GT and the background taking the rest, the optimum minimizes the sum of
    # the two GTs' cost minus the background cost (focal(x, 1) - focal(x, 0) + 1.5 x -log IoU):
    gain = {}
    for (gi, j), iou in {
        (0, 0): 144 / 368, (0, 4): 144 / 368, (0, 5): 169 / 376,
        (1, 5): 144 / 401, (1, 9): 144 / 368, (1, 6): 144 / 368,
    }.items():  # fmt: skip
        x = preds.logits[j, 0].item()
        gain[gi, j] = _focal(x, 1) - _focal(x, 0) - 1.5 * math.log(iou)
    assert gain[0, 5] == pytest.approx(-0.0375, abs=1e-4)  # point 5's confident class 0
    assert gain[0, 4] == gain[1, 9] == pytest.approx(0.8866, abs=1e-4)
    assert gain[1, 5] == pytest.approx(0.2991, abs=1e-4)
    assert gain[0, 0] == gain[1, 6] == pytest.approx(1.3208, abs=1e-4)
    # A5 + B9 = 0.849 beats A4 + B5 = 1.186 (B's cheapest prior is 5, as A's: A keeps it)
    assert _positives(r) == {5: 0, 9: 1}
    # the pair costs are the background's plus these gains
    for (gi, j), value in gain.items():
        at = ((plan.gt_idx == gi) & (plan.prior_idx == j)).nonzero().item()
        assert plan.cost[at].item() - plan.bg_cost[j].item() == pytest.approx(value, abs=1e-6)
    # the IoU of each positive's predicted box is its soft target (weights of the GIoU loss)
    assert r.cls_targets[5].item() == pytest.approx(169 / 376, abs=1e-6)
    assert r.cls_targets[9].item() == pytest.approx(144 / 368, abs=1e-6)
    assert r.stats["dynamic_k_mean"].item() == 1.0
    assert r.stats["gt_outside_centre"].item() == 0.0


def test_hand_case_single_gt_and_gt_without_a_centre_prior():
    priors, preds = _hand_inputs()
    a = OTAAssigner(num_classes=K)
    # A alone: point 5 (gain -0.04, the others 0.89 and 1.32)
    r = a(priors, make_instances([[0, 0, 16, 16]], [0], (32, 32)), predictions=preds)
    assert _positives(r) == {5: 0}
    # a box 3 px wide, class 1: no point inside it, so the official cost is 1e6 + c on every
    # pair; the constant drops out and the GT is transported over its box-or-centre region (all
    # 16 points, square 10.5 +- 20). k = 1. IoUs 9/256 at 0, 1, 4 (boxes covering it), 9/289 at
    # 5, 0 elsewhere; the class-1 logit is 0 at every point, so the gain is the same at 0, 1,
    # 4 (-1.5 log(9/256) - (focal(0, 0) - focal(0, 1))): the unit is split in three, every
    # third has the largest rescaled entry (1) and beats the background there: three positives
    tiny = make_instances([[9, 9, 12, 12]], [1], (32, 32))
    r = a(priors, tiny, predictions=preds)
    plan, _ = a.transport(priors, tiny, preds)
    assert plan.in_both.tolist() == [False] and len(plan.gt_idx) == 16
    assert plan.supply.tolist() == [1.0]
    shares = plan.log_plan.exp()
    assert shares[[0, 1, 4]].tolist() == pytest.approx([0.3106] * 3, abs=1e-4)
    assert _positives(r) == {0: 0, 1: 0, 4: 0}
    assert r.stats["gt_outside_centre"].item() == 1.0


def test_more_units_than_priors_and_no_candidate():
    # 4 priors, 6 GTs of k >= 1: the background's supply is floored at 1 (official: log of a
    # negative number); the result stays finite and valid. A box outside the image has no pair.
    priors = make_priors(image_size=(16, 16), strides=(8,))
    boxes = [[0, 0, 16, 16]] * 3 + [[0, 0, 9, 9], [7, 7, 16, 16], [100, 100, 120, 120]]
    gt = make_instances(boxes, [0, 1, 0, 1, 0, 1], (16, 16))
    preds = _predictions(
        torch.randn(4, K, generator=torch.Generator().manual_seed(0)), torch.ones(4, 4)
    )
    a = OTAAssigner(num_classes=K)
    plan, _ = a.transport(priors, gt, preds)
    assert plan.bg_supply.item() == 1.0 and plan.supply[5].item() == 0
    assert torch.isfinite(plan.log_plan).all() and torch.isfinite(plan.log_plan_bg).all()
    r = a(priors, gt, predictions=preds)
    assert (r.matched_idxs >= 0).all() and (r.matched_idxs != 5).all()


def test_predictions_are_data_and_validation():
    priors, preds = _hand_inputs()
    logits = preds.logits.clone().requires_grad_(True)
    deltas = preds.deltas.clone().requires_grad_(True)
    gt = make_instances([[0, 0, 16, 16]], [0], (32, 32))
    r = OTAAssigner(num_classes=K)(priors, gt, predictions=_predictions(logits, deltas))
    assert not r.cls_targets.requires_grad and r.cls_targets.sum() > 0
    with pytest.raises(ValueError, match="prediction-aware"):
        OTAAssigner(num_classes=K)(priors, gt)
    # no GT: all background, with zero soft targets for the IoU-weighted box loss
    empty = OTAAssigner(num_classes=K)(priors, make_instances([], [], (32, 32)))
    assert (empty.labels == K).all() and torch.equal(empty.cls_targets, torch.zeros(16))
    for key, value in (
        ("sinkhorn_eps", 0.0),
        ("sinkhorn_iters", 0),
        ("top_candidates", 0),
        ("reg_weight", -1.0),
        ("center_radius", 0.0),
        ("focal_gamma", -1.0),
        ("sinkhorn_eps", math.inf),
    ):
        with pytest.raises(ValueError, match=f"model.assigner.{key}"):
            OTAAssigner(num_classes=K, **{key: value})


# ---------------------------------------------------------------------------- dense reference
def dense_ota(a: OTAAssigner, priors, gt, preds):
    """The official rule on dense (M, R) matrices: the cost of every (GT, prior) pair with 1e6
    outside "in box (0.01) and in centre", k from the 20 largest IoUs in box and centre, the
    dense Sinkhorn over every prior, the rescaled argmax (first index on ties, GTs before the
    background). One documented restriction: a GT without a prior in both is transported over
    its box-or-centre region (official: every prior), and a GT without any is left out.
    Returns (matched (R,), log plan (M, R) with -inf for GTs left out, background (R,), k).

    The elementwise values use the package's formulas (``ltrb``-style differences, ``pair_iou``,
    fvcore's focal loss), so that they are equal to the last bit."""
    boxes, classes = gt.gt_boxes.tensor, gt.gt_classes
    M, R = len(boxes), len(priors)
    pred = a.decode_boxes(preds.deltas.float(), priors.boxes.float())
    px, py = priors.centers[None, :, 0], priors.centers[None, :, 1]
    x0, y0, x1, y1 = boxes[:, :, None].unbind(1)  # (M, 1) each
    in_box = torch.minimum(torch.minimum(px - x0, py - y0), torch.minimum(x1 - px, y1 - py))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rs = (a.center_radius * priors.strides)[None]
    in_sq = torch.minimum(
        torch.minimum(px - (cx - rs), py - (cy - rs)), torch.minimum(cx + rs - px, cy + rs - py)
    )
    both = (in_box > 0.01) & (in_sq > 0)
    region = (in_box > 0) | (in_sq > 0)
    del in_box, in_sq
    iou = pair_iou(pred[None], boxes[:, None]).nan_to_num(nan=0.0)
    # the focal loss against the one-hot class, summed over the classes
    x = preds.logits.float()
    f1 = sigmoid_focal_loss(x, torch.ones_like(x), alpha=0.25, gamma=2.0)
    f0 = sigmoid_focal_loss(x, torch.zeros_like(x), alpha=0.25, gamma=2.0)
    onehot = torch.nn.functional.one_hot(classes, x.shape[1]).double()  # (M, K)
    cost = onehot @ f1.double().T + (1 - onehot) @ f0.double().T  # (M, R): sum over the classes
    bg = f0.sum(dim=1, dtype=F64)
    cost -= a.reg_weight * torch.log(iou.double().clamp(min=2**-23))
    cost += OUTSIDE_COST * (~both).double()
    allowed = both.any(dim=1, keepdim=True) | region
    cost = cost.masked_fill_(~allowed, math.inf)
    rows = allowed.any(dim=1)
    top = (iou * both).topk(min(20, R), dim=1).values
    k = top.sum(dim=1, dtype=F64).floor().clamp(min=1) * rows
    mu = torch.cat([k[rows], (R - k.sum()).clamp(min=1)[None]])
    log_plan = dense_sinkhorn(
        torch.cat([cost[rows], bg[None]]), mu, a.sinkhorn_eps, a.sinkhorn_iters
    )
    del cost
    scaled = log_plan - log_plan.max(dim=1, keepdim=True).values
    best, idx = scaled[:-1].max(dim=0)
    matched = torch.where(best >= scaled[-1], rows.nonzero().squeeze(1)[idx], -1)
    full = torch.full((M, R), -math.inf, dtype=F64)
    full[rows] = log_plan[:-1]
    return matched, full, log_plan[-1], k


def _check_equal(a, priors, gt, preds, atol=1e-9):
    r = a(priors, gt, predictions=preds)
    plan, _ = a.transport(priors, gt, preds)
    pred = a.decode_boxes(preds.deltas.detach().float(), priors.boxes.float())
    matched, dense_log, dense_bg, k = dense_ota(a, priors, gt, preds)
    assert torch.equal(plan.supply, k)
    # the plan on the kept pairs and the background row: the dense iterations' values
    dense_pairs = dense_log[plan.gt_idx, plan.prior_idx]
    assert torch.allclose(plan.log_plan.exp(), dense_pairs.exp(), rtol=1e-7, atol=atol)
    assert torch.allclose(plan.log_plan_bg.exp(), dense_bg.exp(), rtol=1e-7, atol=atol)
    # ... and every other entry of the dense plan is exactly 0 (exp underflows)
    rest = dense_log.exp()
    rest[plan.gt_idx, plan.prior_idx] = 0
    assert (rest == 0).all()
    assert torch.equal(r.matched_idxs, matched), f"{int((r.matched_idxs != matched).sum())} differ"
    pos = matched >= 0
    assert torch.equal(r.labels[pos], gt.gt_classes[matched[pos]])
    assert (r.labels[~pos] == a.num_classes).all()
    assert torch.equal(r.cls_targets[pos], pair_iou(pred[pos], gt.gt_boxes.tensor[matched[pos]]))
    return r, plan


def _random_predictions(priors, seed, anchors=False, num_classes=K):
    logits, deltas, _ = random_deltas_and_logits(priors, seed, anchors, num_classes)
    return _predictions(logits, deltas)


@pytest.mark.parametrize("kind", ["ota", "retina_a1"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_dense_reference_random(kind, seed):
    size = (160, 224)
    priors, b2b = points_or_a1_priors(kind, size)
    gt = random_instances(12, size, seed, 2.0, 120.0, K)
    preds = _random_predictions(priors, seed, anchors=b2b is not None)
    r, plan = _check_equal(OTAAssigner(num_classes=K, box2box_transform=b2b), priors, gt, preds)
    assert (r.matched_idxs >= 0).sum() >= 12
    # marginals: every GT row sums to its k and the background's to its supply (the last update
    # is the rows'); every prior receives one unit up to the convergence of 50 iterations
    rows = torch.zeros(12, dtype=F64).index_add_(0, plan.gt_idx, plan.log_plan.exp())
    assert torch.allclose(rows, plan.supply, rtol=0, atol=1e-9)
    bg = plan.log_plan_bg.exp()
    assert bg.sum().item() == pytest.approx(plan.bg_supply.item(), abs=1e-9)
    cols = bg.index_add(0, plan.prior_idx, plan.log_plan.exp())
    assert (cols - 1).abs().max() < 0.1


def test_columns_converge_to_one_unit():
    # the columns' marginals approach one unit with the iterations (slowly: eps 0.1 against
    # costs of a few units)
    size = (96, 128)
    priors, _ = points_or_a1_priors("ota", size)
    gt = random_instances(6, size, 3, 8.0, 60.0, K)
    preds = _random_predictions(priors, 3)
    errors = []
    for iters in (50, 400, 2000):
        plan, _ = OTAAssigner(num_classes=K, sinkhorn_iters=iters).transport(priors, gt, preds)
        cols = plan.log_plan_bg.exp().index_add(0, plan.prior_idx, plan.log_plan.exp())
        errors.append((cols - 1).abs().max().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_equals_dense_reference_edge_cases():
    size = (96, 128)
    priors, _ = points_or_a1_priors("ota", size)
    a = OTAAssigner(num_classes=K)
    preds = _random_predictions(priors, 3)
    cases = {
        "one GT": ([[20, 10, 70, 60]], [1]),
        # one point inside: P3's (8, 8) (points at k x stride; P4's are at 0 and 16)
        "single candidate": ([[5, 5, 11, 11]], [0]),
        # two GTs with the same candidates (same box, and the same box shifted by 1 px)
        "shared candidates": ([[30, 30, 70, 70], [30, 30, 70, 70], [31, 31, 71, 71]], [0, 1, 0]),
        "mixed": (
            [
                [0, 0, 128, 96],  # the whole image
                [0, 0, 9, 7],  # corner, smaller than two strides
                [50, 40, 50, 60],  # zero width: no prior in both
                [30, 30, 31, 31.5],  # tiny, between points
                [-20, 70, 20, 110],  # partly outside the image
                [200, 200, 260, 260],  # outside the image: no pair at all
                [8.0, 8.0, 24.0, 24.0],  # edges on point rows
            ],
            [0, 1, 0, 1, 0, 1, 0],
        ),
    }
    for name, (boxes, classes) in cases.items():
        gt = make_instances(boxes, classes, size)
        for p in (preds, _predictions(torch.zeros(len(priors), K), torch.ones(len(priors), 4))):
            r, plan = _check_equal(a, priors, gt, p)
            if name == "single candidate":
                assert plan.in_both.all() and plan.supply.tolist() == [1.0]
                assert len(plan.gt_idx) == 1 and _positives(r) == {int(plan.prior_idx[0]): 0}
    # no GT
    r = a(priors, make_instances([], [], size), predictions=preds)
    assert (r.labels == K).all() and (r.matched_idxs == -1).all()


def test_equals_dense_reference_crowded_and_chunked():
    size = (256, 320)
    priors, _ = points_or_a1_priors("ota", size)
    gt = random_instances(300, size, 7, 3.0, 60.0, K)
    preds = _random_predictions(priors, 7)
    r, _ = _check_equal(OTAAssigner(num_classes=K), priors, gt, preds)
    small = OTAAssigner(num_classes=K, chunk_pairs=500)(priors, gt, predictions=preds)
    assert torch.equal(small.matched_idxs, r.matched_idxs)
    assert torch.equal(small.cls_targets, r.cls_targets)


def test_equals_dense_reference_without_a_grid():
    # jittered points: not a grid, every (GT, prior) pair is a candidate pair (AllPairs)
    priors = jittered_priors(image_size=(64, 96), strides=(8, 16), jitter=3.0, seed=0)
    gt = random_instances(10, (64, 96), 4, 2.0, 40.0, K)
    a = OTAAssigner(num_classes=K, chunk_pairs=len(priors) * 3)
    _check_equal(a, priors, gt, _random_predictions(priors, 4))


def test_thousand_boxes_on_800x1333_equal_dense_reference():
    size = (800, 1333)
    priors, _ = points_or_a1_priors("ota", size)
    gt = random_instances(1000, size, 11, 4.0, 80.0, K)
    preds = _random_predictions(priors, 11)
    # 2 iterations keep the dense reference (1001 x 22,300 float64) at ten seconds
    a = OTAAssigner(num_classes=K, sinkhorn_iters=2)
    r, plan = _check_equal(a, priors, gt, preds)
    assert int((r.matched_idxs >= 0).sum()) > 1000
    assert len(plan.gt_idx) < 60 * 1000  # the kept pairs, against 22.3 M (GT, prior) pairs


# ---------------------------------------------------------------------------- training
def _model_cfg(family):
    if family == "points":
        return shrink_model(load_model_cfg("configs/common/models/ota.py"), num_classes=3)
    cfg = retinanet_a1_cfg()
    cfg.assigner = L(OTAAssigner)(
        num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
    )
    cfg.loss.box_weighting = "cls_target"  # the IoU-weighted box loss, as OTA's
    return shrink_model(cfg, num_classes=3)


@pytest.mark.parametrize("family", ["points", "retina_a1"])
def test_two_training_steps(family):
    torch.manual_seed(0)
    model = instantiate(_model_cfg(family))
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=3, seed=1)
    for losses, latest in train_steps(model, batch):
        assert latest["num_pos_anchors"] >= 3  # two near-equal boxes of one image share a prior
        assert latest["assigner/dynamic_k_mean"] >= 1
        assert 0 <= latest["assigner/pos_iou_mean"] <= 1
    if family == "points":  # the IoU branch trains
        assert "loss_iou" in losses


def test_images_without_boxes_and_assigner_by_name():
    # the OTA model on a batch without any box: the IoU-weighted box loss finds zero soft targets
    model = instantiate(_model_cfg("points")).train()
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=0, num_classes=3)
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box_reg"] == 0
    # model.assigner=OTAAssigner on the FCOS config: the registry's defaults, point decoding
    cfg = shrink_model(load_model_cfg("configs/common/models/fcos.py"))
    cfg.assigner = "OTAAssigner"
    torch.manual_seed(0)
    model = instantiate(cfg).train()
    assert type(model.assigner).__name__ == "OTAAssigner"
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=3, seed=2)
    with EventStorage() as storage:
        losses = model(batch)
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert storage.latest()["num_pos_anchors"][0] >= 2


def test_config_files():
    for folder in ("Synthetic-Detection", "Synthetic-Converge", "COCO-Detection"):
        suffix = "R_50_FPN_1x" if folder == "COCO-Detection" else "R_18_FPN"
        cfg = LazyConfig.load(str(REPO / "configs" / folder / f"ota_{suffix}.py"))
        m = cfg.model
        assert m.assigner.box2box_transform == m.box2box_transform
        assert (m.loss.use_cls_targets, m.loss.box_weighting, m.loss.quality) == (
            False,
            "cls_target",
            "iou",
        )
        assert m.head.quality == "iou" and m.prior_generator.offset == 0.0
        assert cfg.train.output_dir.endswith(f"ota_{suffix}")
    model = instantiate(shrink_model(load_model_cfg("configs/common/models/ota.py")))
    assert isinstance(model.assigner, OTAAssigner)
    assert isinstance(model.assigner.box2box_transform, Box2BoxTransformLinear)
    assert (model.assigner.focal_alpha, model.assigner.focal_gamma) == (0.25, 2.0)
    assert (model.assigner.reg_weight, model.assigner.topq) == (1.5, 20)

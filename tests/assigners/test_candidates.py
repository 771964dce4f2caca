"""Candidate windows (dense_assign/assigners/candidates.py): every assigner gives the same
AssignResult through its per-GT windows as its dense (GT x prior) reference
(tests/reference_assigners.py), on random and edge-case boxes, crowded images included; plus the
primitives."""

import copy
import math

import pytest
import torch
from detectron2.config import instantiate

from dense_assign.assigners import candidates
from dense_assign.assigners.candidates import (
    BestPerPrior,
    PriorGrid,
    k_smallest,
    smallest_per_gt,
    window_side,
)
from dense_assign.model_zoo import get_config
from dense_assign.structures import DensePredictions, Priors
from dense_assign.tools import priors_for_image_size
from dense_assign.tools.bench.data import random_gt

from ..helpers import make_instances, make_priors
from ..reference_assigners import make_reference

K = 5
#: the packaged model configs, one per assigner setting (priors as the model builds them)
MODELS = {
    "fcos": "common/models/fcos.py",
    "fcos_detectron2": "common/models/fcos_detectron2.py",
    "af_baseline": "common/models/af_baseline.py",
    "pseudo_iou": "common/models/pseudo_iou.py",
    "atss": "common/models/atss.py",
    "atss_A9": "common/models/atss_A9.py",
    "atss_fcos": "common/models/atss_fcos.py",
    "autoassign": "common/models/autoassign.py",
    "sapd": "common/models/sapd.py",
    "retinanet": "common/models/retinanet.py",
}
#: the ones whose dense reference takes long on 1000 boxes at 800 x 1333 (201,600 anchors)
HEAVY = {"atss_A9", "retinanet"}
FSN_CHANNELS = 8

_BUILT = {}


def _build(name):
    """(windowed assigner, dense copy with the same parameters, prior generator) of a config."""
    if name not in _BUILT:
        model = get_config(MODELS[name]).model
        model.num_classes = K
        if "fsn_in_channels" in model.assigner:
            model.assigner.fsn_in_channels = FSN_CHANNELS
        torch.manual_seed(0)
        windowed = instantiate(model.assigner)
        _BUILT[name] = (windowed, instantiate(model.prior_generator))
    prototype, generator = _BUILT[name]
    return copy.deepcopy(prototype), make_reference(prototype), generator


def _predictions(priors, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    return DensePredictions(
        logits=torch.randn(R, K, generator=g),
        deltas=torch.rand(R, 4, generator=g) * 3,
        quality=torch.randn(R, 1, generator=g),
        features=[torch.randn(1, FSN_CHANNELS, h, w, generator=g) for h, w in priors.grid_sizes],
    )


def _close(a, b, what):
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if a.dtype in (torch.long, torch.bool, torch.int32):
        assert torch.equal(a, b), what
    else:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=what)


def assert_same_result(w, d):
    assert torch.equal(w.labels, d.labels)
    assert torch.equal(w.matched_idxs, d.matched_idxs)
    assert torch.equal(w.matched_gt_boxes, d.matched_gt_boxes)
    assert w.num_gt == d.num_gt
    for name in ("loss_weights", "cls_targets"):
        a, b = getattr(w, name), getattr(d, name)
        assert (a is None) == (b is None), name
        if a is not None:
            _close(a, b, name)
    assert (w.pairwise is None) == (d.pairwise is None)
    if w.pairwise is not None:
        assert w.pairwise.keys() == d.pairwise.keys()
        for key in w.pairwise:
            _close(w.pairwise[key], d.pairwise[key], key)
    assert (w.losses is None) == (d.losses is None)
    if w.losses is not None:
        for key in w.losses:
            _close(w.losses[key], d.losses[key], key)
    assert w.stats.keys() == d.stats.keys()
    for key in w.stats:
        assert float(w.stats[key]) == pytest.approx(float(d.stats[key]), rel=1e-6, abs=1e-9), key


def _assign_both(name, priors, gt, **overrides):
    windowed, dense, _ = _build(name)
    for k, v in overrides.items():
        setattr(windowed, k, v)
        setattr(dense, k, v)
    preds = _predictions(priors) if windowed.prediction_aware else None
    with torch.no_grad():
        w = windowed(priors, gt, predictions=preds, image_size=gt.image_size)
        d = dense(priors, gt, predictions=preds, image_size=gt.image_size)
    assert_same_result(w, d)
    return w


def _priors(name, image_size):
    return priors_for_image_size(_build(name)[2], image_size)


def _edge_boxes(h, w):
    """Boxes over the borders, smaller than a stride, degenerate, outside, on the grid, tied."""
    return [
        [-20.0, -30.0, 40.0, 50.0],  # over the top-left corner
        [w - 30.0, h - 25.0, w + 60.0, h + 10.0],  # over the bottom-right corner
        [-100.0, 10.0, w + 100.0, h - 10.0],  # wider than the image
        [0.0, 0.0, float(w), float(h)],  # the whole image
        [3.2, 5.1, 7.9, 9.0],  # smaller than the smallest stride
        [100.0, 100.0, 100.0, 100.0],  # a point
        [60.0, 20.0, 60.0, 90.0],  # zero width
        [50.5, 50.5, 51.0, 51.25],  # tiny
        [w + 50.0, h + 50.0, w + 90.0, h + 80.0],  # outside, beyond the far corner
        [-90.0, -90.0, -10.0, -10.0],  # outside, before the origin
        [-5000.0, 30.0, -4000.0, 90.0],  # far outside
        [40.0, 40.0, 30.0, 50.0],  # inverted
        [8.0, 8.0, 40.0, 40.0],  # edges on k * stride (prior centres of an offset-0 grid)
        [4.0, 4.0, 36.0, 28.0],  # edges on (k + 0.5) * 8
        [12.0, 12.0, 20.0, 20.0],  # centre exactly between points: distance ties
        [0.0, 0.0, 32.0, 32.0],  # centre on a point of several levels
        [24.0, 16.0, 88.0, 80.0],  # the same box three times: ties between GTs
        [24.0, 16.0, 88.0, 80.0],
        [24.0, 16.0, 88.0, 80.0],
        [30.0, 10.0, 94.0, 74.0],  # same area, shifted: area ties
        [26.0, 18.0, 86.0, 78.0],  # nested
        [float(w) - 1.0, 0.0, float(w), float(h)],  # 1 px sliver on the right border
    ]


def _edge_gt(image_size, seed=0):
    h, w = image_size
    boxes = torch.tensor(_edge_boxes(h, w))
    classes = torch.randint(0, K, (len(boxes),), generator=torch.Generator().manual_seed(seed))
    return make_instances(boxes, classes, image_size)


def _random_gt(num, image_size, seed, sides=(8.0, 400.0)):
    gt = random_gt(num, image_size, K, torch.Generator().manual_seed(seed), sides)
    return gt


def _crowd_gt(num, image_size, seed):
    """``num`` heavily overlapping boxes in one corner region, a fifth of them duplicated."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * 60 + 20
    wh = 4 + torch.rand(num, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[num // 5 : 2 * (num // 5)] = boxes[: num // 5]
    return make_instances(boxes, torch.randint(0, K, (num,), generator=g), image_size)


# ----------------------------------------------------------------------------- every assigner
@pytest.mark.parametrize("name", sorted(MODELS))
def test_random_boxes_small_image(name):
    priors = _priors(name, (256, 320))
    for seed in range(3):
        _assign_both(name, priors, _random_gt(40, (256, 320), seed, sides=(4.0, 250.0)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_edge_cases(name):
    image_size = (128, 160)
    priors = _priors(name, image_size)
    r = _assign_both(name, priors, _edge_gt(image_size))
    assert ((r.labels >= 0) & (r.labels < K)).any()
    # one by one as well: a single GT, whatever it is
    gt = _edge_gt(image_size)
    for i in range(len(gt)):
        _assign_both(name, priors, gt[i : i + 1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_crowded_and_empty(name):
    image_size = (128, 160)
    priors = _priors(name, image_size)
    _assign_both(name, priors, _crowd_gt(200, image_size, seed=1))
    empty = make_instances(torch.zeros(0, 4), torch.zeros(0), image_size)
    r = _assign_both(name, priors, empty)
    assert (r.labels == K).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_small_chunks(name):
    # pair lists split into many chunks of whole GTs (and a GT larger than a chunk)
    image_size = (128, 160)
    priors = _priors(name, image_size)
    gt = _random_gt(60, image_size, seed=4, sides=(4.0, 150.0))
    _assign_both(name, priors, gt, chunk_pairs=500)
    _assign_both(name, priors, gt, chunk_pairs=1)


@pytest.mark.parametrize("name", sorted(set(MODELS) - HEAVY))
def test_thousand_boxes_800x1333(name):
    priors = _priors(name, (800, 1333))
    r = _assign_both(name, priors, _random_gt(1000, (800, 1333), seed=5))
    assert ((r.labels >= 0) & (r.labels < K)).sum() > 1000


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_crowded_800x1333_anchor_models(name):
    # 201,600 anchors: the dense reference costs M x R, so fewer boxes at full size and 1000 at
    # a smaller size here (1000 at full size: the long test below)
    _assign_both(name, _priors(name, (800, 1333)), _random_gt(100, (800, 1333), seed=6))
    _assign_both(
        name, _priors(name, (256, 320)), _random_gt(1000, (256, 320), seed=7, sides=(4.0, 120.0))
    )


@pytest.mark.long
@pytest.mark.parametrize("name", sorted(HEAVY))
def test_thousand_boxes_800x1333_anchor_models(name):
    _assign_both(name, _priors(name, (800, 1333)), _random_gt(1000, (800, 1333), seed=5))


def test_max_iou_variants():
    # thresholds with bg_below = 0 (nothing pruned), no low-quality matches, and tight bands
    priors = _priors("retinanet", (128, 160))
    gt = _random_gt(30, (128, 160), seed=8, sides=(4.0, 200.0))
    for thresholds, lq in (
        ((0.0, 0.5), True),
        ((0.4, 0.5), False),
        ((0.5, 0.5), True),
        ((0.0, 0.0), True),
    ):
        _assign_both(
            "retinanet", priors, gt, thresholds=list(thresholds), allow_low_quality_matches=lq
        )
        _assign_both(
            "retinanet",
            priors,
            _edge_gt((128, 160)),
            thresholds=list(thresholds),
            allow_low_quality_matches=lq,
        )


def test_fcos_variants():
    priors = _priors("fcos", (256, 320))
    gt = _random_gt(50, (256, 320), seed=9, sides=(4.0, 300.0))
    for radius, ranges in (
        (None, None),
        (2.5, None),
        (0.5, [(0, 32), (32, 1e8)]),
        (1.5, [(-1, 1e8)] * 5),
    ):
        for inclusive in (True, False):
            _assign_both(
                "fcos",
                priors,
                gt,
                center_sampling_radius=radius,
                scale_ranges=ranges,
                inclusive_ranges=inclusive,
            )


def test_atss_anchor_scale_and_topk():
    priors = _priors("atss_fcos", (128, 160))
    for topk in (1, 4, 9, 20):
        _assign_both("atss_fcos", priors, _edge_gt((128, 160)), topk=topk)
        _assign_both("atss_fcos", priors, _random_gt(30, (128, 160), seed=topk), topk=topk)


def test_pseudo_iou_metrics():
    priors = _priors("pseudo_iou", (128, 160))
    gt = _random_gt(40, (128, 160), seed=10, sides=(4.0, 150.0))
    for metric, threshold in (("piou", 0.4), ("scaled_box", 0.6), ("centerness", 0.3)):
        _assign_both("pseudo_iou", priors, gt, metric=metric, threshold=threshold)


def test_autoassign_fallback_and_shared_points():
    # GTs smaller than a stride (fallback to the nearest points, with distance ties across
    # levels) next to overlapping same-class GTs (shared points)
    priors = _priors("autoassign", (128, 160))
    # points at k * stride: the first two are centred between points (equal distances)
    boxes = [
        [11.0, 11.0, 13.0, 13.0],
        [27.0, 27.0, 29.0, 29.0],
        [9.2, 9.0, 15.0, 14.2],
        [10.0, 10.0, 90.0, 70.0],
        [20.0, 15.0, 100.0, 80.0],
        [-30.0, -30.0, -28.0, -29.0],
    ]
    gt = make_instances(boxes, [1, 1, 0, 2, 2, 2], (128, 160))
    r = _assign_both("autoassign", priors, gt)
    assert r.stats["gt_fallback"] == 4.0


# ----------------------------------------------------------------------------- the grid itself
def test_not_a_grid_takes_every_pair():
    priors = make_priors(image_size=(64, 64), strides=(8, 16, 32, 64, 128))
    assert PriorGrid.of(priors) is not None
    jittered = Priors(
        boxes=priors.boxes + 3.0,
        centers=priors.centers + 3.0,
        strides=priors.strides,
        levels=priors.levels,
        level_sizes=priors.level_sizes,
        grid_sizes=priors.grid_sizes,
        level_strides=priors.level_strides,
        num_anchors=1,
        offset=0.5,
    )
    assert PriorGrid.of(jittered) is None  # 3 px off a stride-8 grid: not laid out on one
    wrong_sizes = copy.copy(priors)
    wrong_sizes.grid_sizes = [(8, 8), (3, 4), (2, 2), (1, 1), (1, 1)]
    assert PriorGrid.of(wrong_sizes) is None
    gt = make_instances([[5.0, 5.0, 40.0, 30.0], [20.0, 30.0, 60.0, 62.0]], [0, 1], (64, 64))
    for name in ("fcos", "atss_fcos", "retinanet", "autoassign", "sapd"):
        windowed, dense, _ = _build(name)
        preds = _predictions(jittered) if windowed.prediction_aware else None
        with torch.no_grad():
            assert_same_result(windowed(jittered, gt, preds), dense(jittered, gt, preds))


def test_grid_is_kept_with_its_priors():
    a, b = _priors("fcos", (256, 320)), _priors("fcos", (256, 320))
    assert PriorGrid.of(a) is PriorGrid.of(a)  # measured once per Priors object
    assert a is not b and PriorGrid.of(b).tol == PriorGrid.of(a).tol == 0.0
    shifted = copy.copy(b)
    shifted.__dict__.pop("_prior_grid")
    shifted.centers = b.centers + 0.1  # same layout, other content
    grid = PriorGrid.of(shifted)
    assert grid is not PriorGrid.of(b) and grid.tol == pytest.approx(0.1, rel=1e-3)
    b.centers.add_(0.2)  # changed in place: measured again
    assert PriorGrid.of(b).tol == pytest.approx(0.2, rel=1e-3)


def test_grid_tolerance_of_anchor_boxes():
    # detectron2's anchors with irrational sizes: centres off the ideal grid by float rounding
    grid = PriorGrid.of(_priors("retinanet", (800, 1333)))
    assert grid is not None and 0.0 <= grid.tol < 1e-3
    assert PriorGrid.of(_priors("fcos", (800, 1333))).tol == 0.0


def test_nearest_windows_pass_their_check_inside_the_image(monkeypatch):
    # the dense fallback of the k-nearest search is for odd cases only: not for GTs whose centre
    # lies inside the image
    import dense_assign.assigners.candidates as cand

    calls = []
    original = cand.PriorGrid.nearest_window_ok

    def spy(self, *args):
        ok = original(self, *args)
        calls.append(int((~ok).sum()))
        return ok

    monkeypatch.setattr(cand.PriorGrid, "nearest_window_ok", spy)
    for name in ("atss", "atss_A9", "atss_fcos"):
        priors = _priors(name, (256, 320))
        windowed, _, _ = _build(name)
        windowed(priors, _random_gt(200, (256, 320), seed=11, sides=(2.0, 300.0)))
    assert calls and sum(calls) == 0


@pytest.mark.parametrize("cells", [1, 2, 4, 9, 10, 25, 81])
def test_window_side_holds_the_nearest_cells(cells):
    # for centres anywhere in a cell of a large grid, the `cells` nearest cells lie strictly
    # inside the window's inscribed distance
    side = window_side(cells)
    half = side // 2
    assert side * side >= cells
    g = torch.Generator().manual_seed(cells)
    u = torch.rand(500, 2, generator=g) - 0.5  # offset of the centre from the nearest cell
    r = torch.arange(-half - 3, half + 4, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)
    d = ((grid[None] - u[:, None].double()) ** 2).sum(-1).sqrt()
    kth = d.sort(dim=1).values[:, cells - 1]
    assert (kth < half + 0.5).all()


# ----------------------------------------------------------------------------- primitives
def test_k_smallest_breaks_ties_by_lowest_column():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (200, 30), generator=g).float()  # many ties
    values[0, 3] = math.nan
    for k in (1, 5, 17, 30):
        got = k_smallest(values, k)
        filled = torch.nan_to_num(values, nan=math.inf)
        order = torch.argsort(filled, dim=1, stable=True)[:, :k]
        assert torch.equal(got, order.sort(dim=1).values), k


@pytest.mark.parametrize("block", [1 << 20, 40])
def test_smallest_per_gt_equals_a_stable_sort(monkeypatch, block):
    # runs of 0-300 pairs per GT with many ties and NaN; a block of 40 elements puts the GTs in
    # blocks by run length (a run longer than a block is a block of its own)
    monkeypatch.setattr(candidates, "RUN_BLOCK", block)
    g = torch.Generator().manual_seed(0)
    num_gt = 30
    counts = torch.randint(0, 300, (num_gt,), generator=g)
    counts[3] = 0
    gt_idx = torch.repeat_interleave(torch.arange(num_gt), counts)
    values = torch.randint(0, 6, (len(gt_idx),), generator=g).double()
    values[::17] = math.nan
    ks = torch.randint(0, 20, (num_gt,), generator=g)
    for k in (ks, 1, 7, 500):
        got = smallest_per_gt(gt_idx, values, k, num_gt)
        kk = ks if isinstance(k, torch.Tensor) else torch.full((num_gt,), k)
        # reference: per GT, the first k after a stable sort by value (NaN last)
        filled = torch.nan_to_num(values, nan=math.inf)
        order = torch.argsort(filled, stable=True)
        order = order[torch.argsort(gt_idx[order], stable=True)]
        start = counts.cumsum(0) - counts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order)) - start[gt_idx[order]]
        assert torch.equal(got, rank < kk[gt_idx]), k
    # pairs of a GT interleaved with another's: sorted first, ties to the lowest prior
    perm = torch.randperm(len(gt_idx), generator=g)
    prior = torch.arange(len(gt_idx))
    got = smallest_per_gt(gt_idx[perm], values[perm], ks, num_gt, prior[perm])
    assert torch.equal(got, smallest_per_gt(gt_idx, values, ks, num_gt)[perm])


def test_best_per_prior_equals_dense_max_in_any_chunk_order():
    g = torch.Generator().manual_seed(0)
    M, R = 40, 300
    score = torch.randint(0, 5, (M, R), generator=g).float()
    score[torch.rand(M, R, generator=g) < 0.6] = -math.inf  # not a pair
    score[:, :10] = -math.inf  # priors without any pair
    value, arg = score.max(dim=0)
    expected = torch.where(torch.isfinite(value), arg, torch.full_like(arg, -1))
    gt_idx, prior_idx = torch.isfinite(score).nonzero(as_tuple=True)
    for chunks in (1, 3, 7):
        best = BestPerPrior(R, "cpu")
        parts = list(torch.randperm(len(gt_idx), generator=g).chunk(chunks))
        for part in parts[::-1]:
            best.update(prior_idx[part], gt_idx[part], score[gt_idx[part], prior_idx[part]])
        b, i = best.result()
        assert torch.equal(i, expected)
        assert torch.equal(b[i >= 0], value[i >= 0])


@pytest.mark.parametrize("anchors", [1, 3])
def test_windows_expand_to_exactly_their_cells(anchors):
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    gen = DefaultAnchorGenerator(
        sizes=[[16], [32]], aspect_ratios=[[0.5, 1.0, 2.0][:anchors]], strides=[8, 16], offset=0.5
    )
    priors = make_priors(image_size=(60, 90), anchor_generator=gen)
    grid = PriorGrid.of(priors)
    g = torch.Generator().manual_seed(anchors)
    lo = torch.rand(25, 2, 2, generator=g) * 120 - 20
    hi = lo + torch.rand(25, 2, 2, generator=g) * 60 - 5
    for per_anchor in (False, True):
        if per_anchor:
            wins = grid.windows(
                lo[:, :, None].expand(-1, -1, anchors, -1),
                hi[:, :, None].expand(-1, -1, anchors, -1),
            )
        else:
            wins = grid.windows(lo, hi)
        gt_idx, prior_idx = wins.pairs()
        assert len(gt_idx) == wins.num_pairs()
        got = set(zip(gt_idx.tolist(), prior_idx.tolist()))
        assert len(got) == len(gt_idx)  # no pair twice
        # brute force: the priors whose ideal centre lies in the widened bounds
        c, lvl = priors.centers, priors.levels
        slack = 5e-3
        for m in range(25):
            inside = ((c >= lo[m, lvl] - slack) & (c <= hi[m, lvl] + slack)).all(dim=1)
            must = ((c >= lo[m, lvl] + slack) & (c <= hi[m, lvl] - slack)).all(dim=1)
            mine = {p for q, p in got if q == m}
            assert (
                set(must.nonzero()[:, 0].tolist()) <= mine <= set(inside.nonzero()[:, 0].tolist())
            )


def test_take_rows_equals_index_select_with_its_gradients():
    # the (C, N) column layout gives the rows of index_select, and the same gradients bit for
    # bit: each element's contributions are summed in the list's order either way
    from dense_assign.box_ops import pair_iou, take_rows

    g = torch.Generator().manual_seed(0)
    table = (torch.rand(50, 4, generator=g) * 100).cumsum(dim=1)  # x1 <= y1 <= x2 <= y2
    other = (torch.rand(50, 4, generator=g) * 100).cumsum(dim=1)
    idx = torch.randint(0, 50, (3000,), generator=g)  # repeated rows
    weights = torch.rand(3000, generator=g)
    grads, values = [], []
    for gather in (
        lambda t, i: t.index_select(0, i),
        lambda t, i: take_rows(t.t().contiguous(), i),
    ):
        leaf = table.clone().requires_grad_()
        rows = gather(leaf, idx)
        iou = pair_iou(rows, gather(other, idx.flip(0)))
        (iou * weights).sum().backward()
        values.append(iou.detach())
        grads.append(leaf.grad)
    assert torch.equal(values[0], values[1]) and (values[0] > 0).any()
    assert torch.equal(grads[0], grads[1]) and (grads[0] != 0).any()


def test_inside_equals_the_minimum_of_ltrb():
    # points on the edges, inside, outside, NaN and inf, with and without a margin
    from dense_assign.box_ops import inside, ltrb

    g = torch.Generator().manual_seed(0)
    boxes = torch.randint(0, 6, (4000, 4), generator=g).float()
    boxes[:, 2:] += boxes[:, :2]
    points = torch.randint(0, 12, (4000, 2), generator=g).float()
    points[::97, 0] = math.nan
    points[::89, 1] = math.inf
    boxes[::83, 2] = math.nan
    for margin in (0.0, 0.01, 1.0, -1.0):
        expect = ltrb(points, boxes).min(dim=-1).values > margin
        assert torch.equal(inside(points, boxes, margin), expect), margin
        assert expect.any() and not expect.all()
    # broadcast, as ATSS's (m, k) candidates against (m, 1) boxes
    assert torch.equal(
        inside(points.view(40, 100, 2), boxes[:40, None]),
        ltrb(points.view(40, 100, 2), boxes[:40, None]).min(dim=-1).values > 0,
    )

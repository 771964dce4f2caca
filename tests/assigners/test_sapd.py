"""SAPD (dense_assign/assigners/sapd.py): hand-computed weights, the shrunk region and its fallback,
the selection target, the two phases, ignored levels, gradient isolation of the selection net, empty
GT, and the configs."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign.assigners import FeatureSelectionNet, SAPDAssigner
from dense_assign.losses import DenseLoss
from dense_assign.registry import ASSIGNER_REGISTRY
from dense_assign.structures import DensePredictions

from ..helpers import REPO, make_instances, make_priors, random_batch

K = 3
STRIDES = (8, 16, 32, 64, 128)


def _priors(image_size=(128, 160), strides=STRIDES):
    # SAPD's priors: points at (k + 0.5) * s with boxes of z * s, z = 4
    return make_priors(image_size=image_size, strides=strides, offset=0.5, scale=4.0)


def _preds(priors, channels=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    return DensePredictions(
        logits=torch.randn(R, K, generator=g) * 2,
        deltas=torch.rand(R, 4, generator=g) * 1.5,
        quality=None,
        features=[torch.randn(1, channels, h, w, generator=g) for h, w in priors.grid_sizes],
    )


def _assigner(**kwargs):
    kwargs.setdefault("num_classes", K)
    kwargs.setdefault("fsn_in_channels", 8)
    kwargs.setdefault("num_levels", 5)
    return SAPDAssigner(**kwargs)


def _randomize_fsn(assigner, seed=1):
    """Make the selection net's probabilities clearly non-uniform (but none near 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in assigner.fsn.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)


# --------------------------------------------------------------------------------- 1. weights
def test_point_weights_hand_computed():
    # one level, stride 8: points at 4, 12, ..., 60. GT (2, 6, 57, 47): centre (29.5, 26.5),
    # 55 x 41; with eps = 0.5 the valid box is x in [15.75, 43.25], y in [16.25, 36.75], so the
    # positives are x, y in {20, 28, 36}.
    priors = _priors(image_size=(64, 64), strides=(8,))
    gt = make_instances([[2, 6, 57, 47]], [1], (64, 64))
    preds = _preds(priors)
    r = _assigner(shrink_factor=0.5, num_levels=1)(priors, gt, predictions=preds)
    pos = (r.labels >= 0) & (r.labels < K)
    expected_points = {(x, y) for x in (20.0, 28.0, 36.0) for y in (20.0, 28.0, 36.0)}
    got_points = {tuple(c.tolist()) for c in priors.centers[pos]}
    assert got_points == expected_points
    assert (r.labels[pos] == 1).all() and (r.labels[~pos] == K).all()

    def w(x, y):
        l, t, rr, b = x - 2, y - 6, 57 - x, 47 - y
        return min(l, rr) * min(t, b) / (max(l, rr) * max(t, b))

    # by hand: (20, 20): l 18, r 37, t 14, b 27 -> 18/37 * 14/27 = 252/999
    assert w(20, 20) == pytest.approx(252 / 999)
    # (28, 28): 26/29 * 19/22 = 494/638; (36, 36): 21/34 * 11/30 = 231/1020
    assert w(28, 28) == pytest.approx(494 / 638)
    assert w(36, 36) == pytest.approx(231 / 1020)
    for i in pos.nonzero()[:, 0].tolist():
        x, y = priors.centers[i].tolist()
        assert r.loss_weights[i].item() == pytest.approx(w(x, y), rel=1e-6)  # eta = 1: no sqrt
    assert (r.loss_weights[~pos] == 1).all()  # negatives keep weight 1 (Eq. 4)

    # eta = 2 squares the weights; soft_point_weights=False gives 1
    r2 = _assigner(shrink_factor=0.5, num_levels=1, eta=2.0)(priors, gt, predictions=preds)
    assert torch.allclose(r2.loss_weights[pos], r.loss_weights[pos] ** 2, rtol=1e-6)
    r0 = _assigner(shrink_factor=0.5, num_levels=1, soft_point_weights=False)(
        priors, gt, predictions=preds
    )
    assert torch.equal(r0.labels, r.labels) and (r0.loss_weights == 1).all()


def test_overlap_goes_to_smaller_gt_and_fallback_weight_is_one():
    priors = _priors(image_size=(64, 64), strides=(8,))
    # both valid boxes (eps 0.5) contain the point (28, 28); the smaller GT 1 takes it
    gt = make_instances([[0, 0, 56, 56], [16, 16, 40, 40]], [0, 2], (64, 64))
    a = _assigner(shrink_factor=0.5, num_levels=1)
    r = a(priors, gt, predictions=_preds(priors))
    at = lambda x, y: int(((priors.centers - torch.tensor([x, y])).abs().sum(1) == 0).nonzero())
    assert r.matched_idxs[at(28, 28)] == 1 and r.labels[at(28, 28)] == 2
    assert r.matched_idxs[at(20, 20)] == 0 and r.labels[at(20, 20)] == 0
    # a box smaller than a stride: no point in B_v, the nearest point (12, 20) is its positive
    # with f = 1 (Eq. 4's "otherwise"), although it lies outside the box
    tiny = make_instances([[14.5, 17.0, 15.5, 18.5]], [1], (64, 64))
    r = a(priors, tiny, predictions=_preds(priors))
    pos = ((r.labels >= 0) & (r.labels < K)).nonzero()[:, 0]
    assert pos.tolist() == [at(12, 20)]
    assert r.loss_weights[pos].item() == 1.0


# --------------------------------------------------------------------------------- 2. region
GTS_APART = [
    [60.2, 70.3, 61.7, 71.1],  # 1.5 x 0.8 px, far below every stride
    [300.0, 200.0, 340.0, 260.0],
    [480.0, 380.0, 636.0, 508.0],
    [150.0, 400.0, 153.0, 500.0],  # 3 px wide
]


def test_region_has_a_point_on_every_level_nearest_to_centre():
    priors = _priors(image_size=(512, 640))
    gt = make_instances(GTS_APART, [0, 1, 2, 0], (512, 640))
    a = _assigner()
    # the GTs are far apart: each point of a region is matched to its GT
    matched = a.match(priors, gt.gt_boxes.tensor)
    mask = torch.stack([matched == g for g in range(len(gt))])
    boxes = gt.gt_boxes.tensor
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    for g in range(len(gt)):
        for lvl, m in enumerate(priors.split(mask[g])):
            assert m.sum() >= 1, (g, lvl)
    # the tiny GT: exactly the nearest point on each level
    for lvl, (m, pts) in enumerate(zip(priors.split(mask[0]), priors.split(priors.centers))):
        d = ((pts - centers[0]) ** 2).sum(1)
        assert m.nonzero()[:, 0].tolist() == [int(d.argmin())], lvl
    expected = [(60, 68), (56, 72), (48, 80), (32, 96), (64, 64)]
    got = [
        tuple(pts[m].squeeze(0).tolist())
        for m, pts in zip(priors.split(mask[0]), priors.split(priors.centers))
    ]
    assert got == [(float(x), float(y)) for x, y in expected]


@pytest.mark.parametrize("start_iter,levels_per_gt", [(0, 1), (7, 3)])
def test_every_gt_has_positives_on_its_selected_levels(start_iter, levels_per_gt):
    priors = _priors(image_size=(512, 640))
    gt = make_instances(GTS_APART, [0, 1, 2, 0], (512, 640))
    a = _assigner(max_iter=14)
    _randomize_fsn(a)
    with EventStorage(start_iter=start_iter):
        r = a(priors, gt, predictions=_preds(priors, seed=3))
    pos = (r.labels >= 0) & (r.labels < K)
    for g in range(len(gt)):
        levels = priors.levels[pos & (r.matched_idxs == g)].unique()
        assert len(levels) == levels_per_gt, (g, levels)
    # the tiny GT has exactly one point per level, so one positive per selected level
    assert int((pos & (r.matched_idxs == 0)).sum()) == levels_per_gt
    assert r.stats["gt_without_pos"] == 0.0


# ----------------------------------------------------------------------- 3. selection target
# three GTs whose regions share no point on any level (P7 is a 2 x 3 grid here)
BOXES_3 = [[10.0, 12.0, 50.0, 40.0], [170.0, 20.0, 250.0, 120.0], [280.0, 200.0, 284.0, 204.0]]


def _explicit_region(priors, box, eps=0.2):
    """Region of one GT, by explicit loops: points in B_v, else the nearest point, per level."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * eps / 2, (box[3] - box[1]) * eps / 2
    out, start = [], 0
    for size in priors.level_sizes:
        idx = [
            i
            for i in range(start, start + size)
            if abs(priors.centers[i, 0] - cx) <= hw and abs(priors.centers[i, 1] - cy) <= hh
        ]
        if not idx:
            d = [
                (priors.centers[i, 0] - cx) ** 2 + (priors.centers[i, 1] - cy) ** 2
                for i in range(start, start + size)
            ]
            idx = [start + min(range(size), key=lambda j: d[j])]
        out.append(idx)
        start += size
    return out


def _explicit_point_loss(logit, cls, delta, prior_box, box, alpha=0.25, gamma=2.0):
    loss = 0.0
    for k in range(K):
        p = 1 / (1 + math.exp(-logit[k]))
        if k == cls:
            loss += -alpha * (1 - p) ** gamma * math.log(p)
        else:
            loss += -(1 - alpha) * p**gamma * math.log(1 - p)
    cx, cy = (prior_box[0] + prior_box[2]) / 2, (prior_box[1] + prior_box[3]) / 2
    size = prior_box[2] - prior_box[0]  # z * stride
    l, t, r, b = [max(v, 0.0) * size for v in delta]
    px1, py1, px2, py2 = cx - l, cy - t, cx + r, cy + b
    iw = max(0.0, min(px2, box[2]) - max(px1, box[0]))
    ih = max(0.0, min(py2, box[3]) - max(py1, box[1]))
    inter = iw * ih
    union = (px2 - px1) * (py2 - py1) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return loss - math.log(max(inter / union, 1e-6))


def test_selection_target_is_argmin_of_explicit_instance_losses():
    priors = _priors(image_size=(256, 320))
    gt = make_instances(BOXES_3, [2, 0, 1], (256, 320))
    preds = _preds(priors, seed=5)
    a = _assigner(max_iter=100)
    matched = a.match(priors, gt.gt_boxes.tensor)
    points = (matched >= 0).nonzero()[:, 0]
    losses = a.instance_losses(priors, gt, points, matched[points], preds)

    explicit = torch.full((3, 5), math.inf, dtype=torch.float64)
    for g, box in enumerate(BOXES_3):
        for lvl, idx in enumerate(_explicit_region(priors, box)):
            idx = [i for i in idx if matched[i] == g]  # a contested point goes to the smaller GT
            if idx:
                vals = [
                    _explicit_point_loss(
                        preds.logits[i].tolist(),
                        int(gt.gt_classes[g]),
                        preds.deltas[i].tolist(),
                        priors.boxes[i].tolist(),
                        box,
                    )
                    for i in idx
                ]
                explicit[g, lvl] = sum(vals) / len(vals)
    assert torch.isfinite(explicit).all()
    assert torch.allclose(losses.double(), explicit, rtol=1e-5, atol=1e-6)
    target = explicit.argmin(dim=1)

    # phase one trains each GT on exactly that level, and the selection net's cross-entropy uses
    # it as the target (lambda = 0.1)
    with EventStorage(start_iter=0):
        r = a(priors, gt, predictions=preds)
    pos = (r.labels >= 0) & (r.labels < K)
    for g in range(3):
        assert priors.levels[pos & (r.matched_idxs == g)].unique().tolist() == [int(target[g])]
    logits = a.fsn([f.detach() for f in preds.features], gt.gt_boxes.tensor, priors.level_strides)
    expected = 0.1 * F.cross_entropy(logits, target)
    assert r.losses["loss_fsn"].item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------- 4. phases
def _level_weights_from_result(a, priors, gt, preds, r):
    """(M, L) level weight per GT and level, read from loss_weights / f of the positives."""
    out = torch.zeros(len(gt), priors.num_levels)
    pos = ((r.labels >= 0) & (r.labels < K)).nonzero()[:, 0]
    f = a.point_weights(priors.centers[pos], gt.gt_boxes.tensor[r.matched_idxs[pos]])
    ratio = r.loss_weights[pos] / f
    for g, lvl, v in zip(r.matched_idxs[pos].tolist(), priors.levels[pos].tolist(), ratio.tolist()):
        assert out[g, lvl] == 0 or out[g, lvl] == pytest.approx(v, rel=1e-5)
        out[g, lvl] = v
    return out


@pytest.mark.parametrize("topk_by", ["loss", "fsn"])
def test_phase_one_one_hot_then_top3_soft_at_switch_iter(topk_by):
    priors = _priors(image_size=(256, 320))
    gt = make_instances(BOXES_3, [2, 0, 1], (256, 320))
    preds = _preds(priors, seed=5)
    a = _assigner(max_iter=10, topk_by=topk_by)  # switch at int(0.5 * 10) = 5
    _randomize_fsn(a)
    assert a.switch_iter == 5
    matched = a.match(priors, gt.gt_boxes.tensor)
    points = (matched >= 0).nonzero()[:, 0]
    losses = a.instance_losses(priors, gt, points, matched[points], preds)
    probs = a.fsn(preds.features, gt.gt_boxes.tensor, priors.level_strides).softmax(1).detach()

    with EventStorage(start_iter=4):
        r1 = a(priors, gt, predictions=preds)
    assert r1.stats["sapd_phase"] == 1.0
    w1 = _level_weights_from_result(a, priors, gt, preds, r1)
    assert torch.equal(w1, F.one_hot(losses.argmin(1), 5).float())

    with EventStorage(start_iter=5):
        r2 = a(priors, gt, predictions=preds)
    assert r2.stats["sapd_phase"] == 2.0
    w2 = _level_weights_from_result(a, priors, gt, preds, r2)
    ranking = losses.argsort(dim=1, stable=True) if topk_by == "loss" else (-probs).argsort(1)
    expected = torch.zeros(3, 5)
    for g in range(3):
        for lvl in ranking[g, :3].tolist():
            expected[g, lvl] = probs[g, lvl]  # not renormalized
    assert (w2 > 0).sum(1).tolist() == [3, 3, 3]
    assert torch.allclose(w2, expected, rtol=1e-5, atol=0)
    assert not torch.allclose(expected.sum(1), torch.ones(3))  # really not renormalized
    # the phase comes from the storage: a later iteration of a resumed run is still phase two
    with EventStorage(start_iter=9):
        assert torch.equal(a(priors, gt, predictions=preds).labels, r2.labels)


def test_renormalized_top3_weights_sum_to_one():
    losses = torch.tensor([[0.5, 0.1, 0.3, math.inf, 0.9], [0.2, 0.4, 0.6, 0.8, 1.0]])
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.25], [0.4, 0.1, 0.1, 0.2, 0.2]])
    plain = _assigner().level_weights(losses, probs, phase=2)
    # the 3 minimal-loss levels keep their probabilities (levels 1, 2, 0 and 0, 1, 2)
    assert torch.allclose(plain, torch.tensor([[0.1, 0.2, 0.3, 0, 0], [0.4, 0.1, 0.1, 0, 0]]))
    renorm = _assigner(renormalize_topk=True).level_weights(losses, probs, phase=2)
    expected = torch.tensor([[1, 2, 3, 0, 0], [4, 1, 1, 0, 0]]) / 6.0
    assert torch.allclose(renorm, expected)
    # phase one is one-hot either way
    one = _assigner(renormalize_topk=True).level_weights(losses, probs, phase=1)
    assert one.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_phase_without_storage_and_without_soft_levels():
    a = _assigner(max_iter=10)
    assert a.phase() == 2  # no EventStorage: not training, the final rule
    b = SAPDAssigner(num_classes=K, soft_levels=False, max_iter=10)
    assert b.fsn is None and b.phase() == 1
    with EventStorage(start_iter=9):
        assert b.phase() == 1 and a.phase() == 2
    with EventStorage(start_iter=4):
        assert a.phase() == 1
    with EventStorage(start_iter=4):
        assert _assigner(max_iter=None).phase() == 2  # no schedule: phase two
    # Sec. 4.1's control: the selection net trains alongside, its weights are never used
    c = _assigner(soft_levels=False, use_fsn=True, max_iter=10)
    priors = _priors(image_size=(256, 320))
    gt = make_instances(BOXES_3, [2, 0, 1], (256, 320))
    preds = _preds(priors, seed=5)
    with EventStorage(start_iter=9):
        r = c(priors, gt, predictions=preds)
    assert r.losses["loss_fsn"].requires_grad and r.stats["sapd_phase"] == 1.0
    assert ((r.loss_weights > 0) & (r.loss_weights < 1)).any()
    pos = (r.labels >= 0) & (r.labels < K)
    for g in range(3):
        assert len(priors.levels[pos & (r.matched_idxs == g)].unique()) == 1
    with pytest.raises(ValueError):
        SAPDAssigner(num_classes=K, soft_levels=True, use_fsn=False)


# ------------------------------------------------------------------------ 5. ignored levels
@pytest.mark.parametrize("start_iter,ignored_levels", [(0, 4), (100, 2)])
def test_region_points_on_zero_weight_levels_are_ignored(start_iter, ignored_levels):
    priors = _priors(image_size=(512, 640))
    gt = make_instances(GTS_APART, [0, 1, 2, 0], (512, 640))
    a = _assigner(max_iter=100)
    _randomize_fsn(a)
    preds = _preds(priors, seed=4)
    with EventStorage(start_iter=start_iter):
        r = a(priors, gt, predictions=preds)
    matched = a.match(priors, gt.gt_boxes.tensor)
    region = matched >= 0
    assert torch.equal(r.matched_idxs, matched)
    assert (r.labels[~region] == K).all()  # outside every region: negative
    assert not (r.labels[region] == K).any()  # a region point is never a negative
    ignored = r.labels == -1
    assert (r.loss_weights[ignored] == 0).all()
    for g in range(len(gt)):
        lv = priors.levels[ignored & (matched == g)].unique()
        assert len(lv) == ignored_levels, (g, lv)
    # the loss does not see ignored points at all: changing their logits changes nothing, changing
    # a negative's does
    loss = DenseLoss(num_classes=K, box_loss="iou")
    b2b = Box2BoxTransformLinear(normalize_by_size=True)
    base = loss(priors=priors, predictions=_batch(preds), assignments=[r], box2box_transform=b2b)
    moved = _batch(preds)
    moved.logits[0, ignored] += 3.0
    same = loss(priors=priors, predictions=moved, assignments=[r], box2box_transform=b2b)
    assert same["loss_cls"].item() == base["loss_cls"].item()
    moved.logits[0, r.labels == K] += 3.0
    other = loss(priors=priors, predictions=moved, assignments=[r], box2box_transform=b2b)
    assert other["loss_cls"].item() > base["loss_cls"].item() * 1.5


def _batch(preds):
    return DensePredictions(
        logits=preds.logits[None].clone(),
        deltas=preds.deltas[None].clone(),
        quality=None,
        features=preds.features,
    )


# ------------------------------------------------------------------- 6. gradient isolation
def _model(path="configs/Synthetic-Detection/sapd_R_18_FPN.py", overrides=()):
    cfg = LazyConfig.load(str(REPO / path))
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    torch.manual_seed(0)
    return instantiate(cfg.model)


@pytest.mark.parametrize("start_iter", [0, 10**6])  # phase one and phase two
def test_selection_net_gets_gradients_only_from_its_loss(start_iter):
    model = _model()
    model.train()
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=3, num_classes=7)
    fsn_names = {n for n, _ in model.named_parameters() if n.startswith("assigner.fsn.")}
    assert len(fsn_names) == 8  # 3 convs + fc, weight and bias
    with EventStorage(start_iter=start_iter):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_fsn"}
    (losses["loss_cls"] + losses["loss_box_reg"]).backward()
    for n, p in model.named_parameters():
        if n in fsn_names:
            assert p.grad is None, n
        elif n.startswith("head."):
            assert p.grad is not None, n
    model.zero_grad(set_to_none=True)
    with EventStorage(start_iter=start_iter):
        losses = model(batch)
    losses["loss_fsn"].backward()
    for n, p in model.named_parameters():
        if n in fsn_names:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_selection_net_feature_grad_flag():
    model = _model(overrides=["model.assigner.fsn_feature_grad=True"])
    model.train()
    batch = random_batch(num_images=1, image_size=(96, 128), num_boxes=2, num_classes=7)
    with EventStorage():
        model(batch)["loss_fsn"].backward()
    assert model.backbone.fpn_output3.weight.grad is not None
    assert model.head.cls_score.weight.grad is None


# ----------------------------------------------------------------------------- 7. empty GT
def test_empty_gt():
    priors = _priors(image_size=(64, 96))
    gt = make_instances(torch.zeros(0, 4), torch.zeros(0), (64, 96))
    a = _assigner()
    r = a(priors, gt, predictions=_preds(priors))
    assert (r.labels == K).all() and (r.matched_idxs == -1).all()
    assert (r.loss_weights == 1).all()
    assert r.losses["loss_fsn"].item() == 0.0
    r.losses["loss_fsn"].backward()
    for n, p in a.fsn.named_parameters():
        assert p.grad is not None and (p.grad == 0).all(), n
    # and through the model: an image without GT next to one with
    model = _model()
    model.train()
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=2, num_classes=7)
    batch[1]["instances"] = batch[1]["instances"][:0]
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.assigner.fsn.parameters())


def test_selection_net_architecture():
    # Table 1: 1280 x 7 x 7 -> 256 x 5 x 5 -> 256 x 3 x 3 -> 256 x 1 x 1 -> fc 5
    net = FeatureSelectionNet(in_channels=256, num_levels=5)
    x = torch.zeros(2, 1280, 7, 7)
    shapes = []
    for m in net.convs:
        x = m(x)
        if isinstance(m, torch.nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(256, 5, 5), (256, 3, 3), (256, 1, 1)]
    assert net.fc.in_features == 256 and net.fc.out_features == 5
    # RoIAlign of the GT box on each level, aligned, spatial scale 1 / stride
    feats = [
        torch.arange(float(h * h)).view(1, 1, h, h).expand(1, 256, h, h) for h in (16, 8, 4, 2, 1)
    ]
    out = net.pool(feats, torch.tensor([[0.0, 0.0, 128.0, 128.0]]), [8, 16, 32, 64, 128])
    assert out.shape == (1, 1280, 7, 7)


@pytest.mark.parametrize("feature_grad", [False, True])
def test_selection_net_pools_again_in_backward_above_the_bound(monkeypatch, feature_grad):
    # above FSN_KEEP_POOLED_BYTES the graph keeps no RoIAlign output: the backward pass pools
    # each level again, and the logits and every gradient are bit for bit those of the graph
    # that keeps them
    import dense_assign.assigners.sapd as sapd

    g = torch.Generator().manual_seed(3)
    net = FeatureSelectionNet(in_channels=16, num_levels=5)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    feats = [torch.randn(1, 16, -(-60 // 2**i), -(-90 // 2**i), generator=g) for i in range(5)]
    feats = [f.requires_grad_(feature_grad) for f in feats]
    xy = torch.rand(9, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + 4 + torch.rand(9, 2, generator=g) * 300], dim=1)
    grad_out = torch.randn(9, 5, generator=g)
    calls = []
    pool_level = FeatureSelectionNet._pool_level
    monkeypatch.setattr(
        FeatureSelectionNet, "_pool_level", lambda *a: calls.append(1) or pool_level(*a)
    )

    def run(bound):
        monkeypatch.setattr(sapd, "FSN_KEEP_POOLED_BYTES", bound)
        calls.clear()
        logits = net(feats, boxes, [8, 16, 32, 64, 128])
        inputs = list(net.parameters()) + (feats if feature_grad else [])
        grads = torch.autograd.grad(logits, inputs, grad_out)
        return logits, grads, len(calls)

    kept, kept_grads, kept_calls = run(1 << 40)
    again, again_grads, again_calls = run(0)
    assert (kept_calls, again_calls) == (5, 10)
    assert torch.equal(kept, again)
    assert len(kept_grads) == len(again_grads) == 8 + 5 * feature_grad
    assert all(torch.equal(a, b) for a, b in zip(kept_grads, again_grads))
    assert all(a.abs().sum() > 0 for a in again_grads)


# ---------------------------------------------------------------------------- 8. configs
def test_configs_follow_train_max_iter_and_variants():
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/sapd_R_18_FPN.py"))
    cfg = LazyConfig.apply_overrides(cfg, ["train.max_iter=10"])
    a = instantiate(cfg.model.assigner)
    assert a.max_iter == 10 and a.switch_iter == 5
    assert a.fsn.in_channels == 96 and a.fsn.num_levels == 5
    coco = LazyConfig.load(str(REPO / "configs/COCO-Detection/sapd_R_50_FPN_2x_ms.py"))
    assert instantiate(coco.model.assigner).switch_iter == 90000
    coco = LazyConfig.load(str(REPO / "configs/COCO-Detection/sapd_R_50_FPN_1x.py"))
    a = instantiate(coco.model.assigner)
    assert (a.switch_iter, a.fsn.in_channels, a.topk, a.eta, a.shrink_factor) == (
        45000,
        256,
        3,
        1.0,
        0.2,
    )
    assert a.fsn_loss_weight == 0.1
    m = coco.model
    assert (m.prior_generator.offset, m.prior_generator.scale) == (0.5, 4.0)
    assert (m.head.bbox_reg_bias, m.head.prior_prob, m.head.use_scale, m.head.quality) == (
        0.1,
        0.01,
        False,
        "none",
    )
    assert (m.loss.box_loss, m.test_score_fn, m.test_nms_thresh) == ("iou", "cls", 0.5)
    # the model file alone: no train.max_iter to follow
    alone = LazyConfig.load(str(REPO / "configs/common/models/sapd.py"))
    assert instantiate(alone.model.assigner).max_iter is None
    fsaf = instantiate(
        LazyConfig.load(
            str(REPO / "configs/Synthetic-Detection/sapd_fsaf_R_18_FPN.py")
        ).model.assigner
    )
    assert (fsaf.soft_point_weights, fsaf.soft_levels, fsaf.fsn) == (False, False, None)
    sw = instantiate(
        LazyConfig.load(
            str(REPO / "configs/Synthetic-Detection/sapd_sw_R_18_FPN.py")
        ).model.assigner
    )
    assert (sw.soft_point_weights, sw.soft_levels, sw.fsn) == (True, False, None)


def test_registered():
    assert ASSIGNER_REGISTRY.get("SAPDAssigner") is SAPDAssigner
    assert SAPDAssigner.prediction_aware

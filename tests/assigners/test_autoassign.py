"""AutoAssign: the losses against a loop-by-loop evaluation of Eq. 1-12, gradients, empty and tiny
GTs, and chunked against unchunked computation."""

import math

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign.assigners import AutoAssign
from dense_assign.box_ops import pair_iou
from dense_assign.losses import AutoAssignLoss
from dense_assign.structures import DensePredictions

from ..helpers import REPO, make_instances, make_priors, random_batch

K = 2
CFG = "configs/Synthetic-Detection/autoassign_R_18_FPN.py"


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _iou_giou(a, b):
    """IoU and GIoU of two XYXY boxes (plain floats)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    enclose = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    iou = inter / union
    return iou, iou - (enclose - union) / enclose


def _reference(points, strides, boxes, classes, logits, deltas, obj, mu, sigma, confidence="joint"):
    """Eq. 1-12 with the official normalizers, per image, with plain loops over GTs and points.

    ``points`` / ``strides``: per point; ``boxes`` / ``classes``: per image, per GT; ``logits``
    [image][point][class], ``deltas`` [image][point][4] (l, t, r, b in strides), ``obj``
    [image][point]; ``mu`` / ``sigma`` [class][axis] (None: G = 1).
    Returns the three losses and, per image, {(gt, point): (w+, P+)}.
    """
    lam, tau, eps = 5.0, 1.0 / 3, 1e-12
    bag_loss_sum, num_gt, prior_sum, center_terms, neg_sum = 0.0, 0, 0.0, [], 0.0
    per_pair = []
    for img in range(len(boxes)):
        pred = []
        for j, ((x, y), s) in enumerate(zip(points, strides)):
            l, t, r, b = (max(0.0, v) * s for v in deltas[img][j])
            pred.append((x - l, y - t, x + r, y + b))
        F = {}  # (point, class) -> foreground probability
        pairs = {}
        g_img = 0.0
        for i, (box, c) in enumerate(zip(boxes[img], classes[img])):
            inside = [
                j
                for j, (x, y) in enumerate(points)
                if min(x - box[0], y - box[1], box[2] - x, box[3] - y) > 0
            ]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            G, P, C = {}, {}, {}
            for j in inside:
                (x, y), s = points[j], strides[j]
                if mu is None:
                    G[j] = 1.0
                else:
                    G[j] = 1.0
                    for axis, d in enumerate(((x - cx) / s, (y - cy) / s)):
                        G[j] *= math.exp(-((d - mu[c][axis]) ** 2) / (2 * sigma[c][axis] ** 2))
                p_cls = _sigmoid(logits[img][j][c]) * _sigmoid(obj[img][j])
                p_loc = math.exp(-lam * (1.0 - _iou_giou(pred[j], box)[1]))
                P[j] = p_cls * p_loc
                conf = {"joint": P[j], "cls": p_cls, "loc": p_loc}[confidence]
                C[j] = math.exp(conf / tau)
            total = sum(C[j] * G[j] for j in inside)
            bag = 0.0
            for j in inside:
                w = C[j] * G[j] / total
                pairs[(i, j)] = (w, P[j])
                bag += w * P[j]
            bag_loss_sum += -math.log(bag)
            g_img += sum(G.values())
            # negative weights: max IoU over all GTs, 1 / (1 - IoU), min-max over the GT's points
            v = {}
            for j in inside:
                best = max(_iou_giou(pred[j], other)[0] for other in boxes[img])
                v[j] = 1.0 / max(1.0 - best, eps)
            lo, hi = min(v.values()), max(v.values())
            for j in inside:
                F[(j, c)] = (v[j] - lo + eps) / (hi - lo + eps)  # a later GT overwrites
        num_gt += len(boxes[img])
        prior_sum += g_img
        center_terms.append(len(boxes[img]) / max(g_img, eps) if boxes[img] else 0.0)
        for j in range(len(points)):
            for c in range(K):
                p = _sigmoid(logits[img][j][c]) * _sigmoid(obj[img][j]) * (1 - F.get((j, c), 0.0))
                neg_sum += p**2 * -math.log(1 - p)
        per_pair.append(pairs)
    losses = {
        "loss_pos": 0.25 * bag_loss_sum / max(1, num_gt),
        "loss_neg": 0.75 * neg_sum / max(1.0, prior_sum),
        "loss_center": 0.75 * sum(center_terms) / len(center_terms),
    }
    return losses, per_pair


# 32x32 image, points at k * stride: level 0 stride 8 at 0, 8, 16, 24; level 1 stride 16 at 0, 16.
# GT0 and GT2 (class 0) overlap, so GT2 overwrites GT0's foreground probability on their shared
# points; GT1 (class 1) overlaps both on another channel. Image 1 has no GT.
BOXES = [[[2.0, 3.0, 21.0, 18.0], [10.0, 5.0, 30.0, 30.0], [5.0, 6.0, 19.0, 26.0]], []]
CLASSES = [[0, 1, 0], []]
MU = [[0.1, -0.2], [0.3, 0.05]]
SIGMA = [[0.8, 1.2], [1.5, 0.7]]


def _tiny_case(seed=0):
    priors = make_priors(image_size=(32, 32), strides=(8, 16), offset=0.0)
    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    preds = DensePredictions(
        logits=torch.randn(2, R, K, generator=g, dtype=torch.float64) - 1.0,
        deltas=torch.rand(2, R, 4, generator=g, dtype=torch.float64) * 1.5,
        quality=torch.randn(2, R, 1, generator=g, dtype=torch.float64),
        features=[],
    )
    gts = [
        make_instances(b if b else torch.zeros(0, 4), c, (32, 32)) for b, c in zip(BOXES, CLASSES)
    ]
    for gt in gts:
        gt.gt_boxes.tensor = gt.gt_boxes.tensor.double()
    return priors, preds, gts


def _run(assigner, priors, preds, gts, loss=None):
    priors.boxes, priors.centers, priors.strides = (
        priors.boxes.double(),
        priors.centers.double(),
        priors.strides.double(),
    )
    results = [
        assigner(priors, gt, predictions=preds.image(i), image_size=(32, 32))
        for i, gt in enumerate(gts)
    ]
    loss = loss or AutoAssignLoss(num_classes=K)
    losses = loss(priors=priors, predictions=preds, assignments=results)
    return results, losses


@pytest.mark.parametrize(
    "center_prior,confidence",
    [
        ("per_category", "joint"),
        ("shared", "joint"),
        ("none", "joint"),
        ("per_category", "cls"),
        ("fixed", "loc"),
    ],
)
def test_losses_equal_loop_evaluation_of_the_equations(center_prior, confidence):
    priors, preds, gts = _tiny_case()
    assigner = AutoAssign(num_classes=K, center_prior=center_prior, confidence=confidence).double()
    mu, sigma = None, None
    if center_prior in ("per_category", "shared"):
        rows = MU if center_prior == "per_category" else MU[:1]
        with torch.no_grad():
            assigner.mu.copy_(torch.tensor(rows, dtype=torch.float64))
            assigner.sigma.copy_(torch.tensor(SIGMA[: len(rows)], dtype=torch.float64))
        mu = MU if center_prior == "per_category" else [MU[0]] * K
        sigma = SIGMA if center_prior == "per_category" else [SIGMA[0]] * K
    elif center_prior == "fixed":
        mu, sigma = [[0.0, 0.0]] * K, [[1.0, 1.0]] * K
    results, losses = _run(assigner, priors, preds, gts)

    points = priors.centers.tolist()
    strides = priors.strides.tolist()
    expected, pairs = _reference(
        points,
        strides,
        BOXES,
        CLASSES,
        preds.logits.tolist(),
        preds.deltas.tolist(),
        preds.quality[..., 0].tolist(),
        mu,
        sigma,
        confidence,
    )
    for key, value in expected.items():
        # detectron2's Boxes (the negative weights' IoU) hold float32; the rest runs in float64
        assert losses[key].item() == pytest.approx(value, rel=1e-6 if key == "loss_neg" else 1e-9)
    # the per-pair weights and confidences, and the pair list sorted by GT then point
    pw = results[0].pairwise
    got = {
        (int(i), int(j)): (float(w), float(p))
        for i, j, w, p in zip(
            pw["gt_idx"], pw["point_idx"], pw["w_plus"].tolist(), pw["pos_conf"].tolist()
        )
    }
    assert list(got) == sorted(pairs[0])
    for key, (w, p) in pairs[0].items():
        assert got[key][0] == pytest.approx(w, rel=1e-9)
        assert got[key][1] == pytest.approx(p, rel=1e-9)
    assert len(results[1].pairwise["gt_idx"]) == 0


def test_hand_case_candidates_overlap_rule_and_labels():
    priors, preds, gts = _tiny_case()
    assigner = AutoAssign(num_classes=K).double()
    results, _ = _run(assigner, priors, preds, gts)
    r = results[0]
    pw = r.pairwise
    # level 0 index = 4 * row + col (points (8 col, 8 row)); level 1 (16, 16) is index 16 + 3 = 19
    per_gt = {i: pw["point_idx"][pw["gt_idx"] == i].tolist() for i in range(3)}
    assert per_gt == {
        0: [5, 6, 9, 10, 19],
        1: [6, 7, 10, 11, 14, 15, 19],
        2: [5, 6, 9, 10, 13, 14, 19],
    }
    # one foreground-probability entry per (point, class); class 0 comes from GT2 wherever GT0 and
    # GT2 share a point (the later GT wins, as the official loop)
    entries = {
        (int(p), int(c)): float(f)
        for p, c, f in zip(pw["neg_point"], pw["neg_class"], pw["neg_fg"])
    }
    assert len(entries) == len(pw["neg_point"])
    assert sorted(entries) == sorted(
        {(p, 0) for p in per_gt[0] + per_gt[2]} | {(p, 1) for p in per_gt[1]}
    )
    # recompute f on the shared points from GT2's and from GT0's candidates: they differ, and the
    # stored values are GT2's
    pred = assigner.decode_boxes(preds.deltas[0], priors.boxes)
    # in float64 (detectron2's Boxes would round the float64 boxes to float32)
    max_iou = pair_iou(gts[0].gt_boxes.tensor[:, None].double(), pred[None]).max(dim=0).values
    v = (1.0 / (1.0 - max_iou)).tolist()

    def f(gt, j):
        vals = [v[k] for k in per_gt[gt]]
        return (v[j] - min(vals) + 1e-12) / (max(vals) - min(vals) + 1e-12)

    shared = [5, 6, 9, 10, 19]
    assert max(abs(f(2, j) - f(0, j)) for j in shared) > 1e-3
    for j in shared:
        assert entries[(j, 0)] == pytest.approx(f(2, j), rel=1e-9)
    for j in per_gt[1]:
        assert entries[(j, 1)] == pytest.approx(f(1, j), rel=1e-9)
    # analysis labels: each candidate point takes its largest-w+ GT; the rest are background
    w = {
        (int(i), int(j)): v for i, j, v in zip(pw["gt_idx"], pw["point_idx"], pw["w_plus"].tolist())
    }
    for j in range(len(priors)):
        owners = [i for i in range(3) if (i, j) in w]
        if not owners:
            assert r.labels[j] == K and r.matched_idxs[j] == -1
        else:
            best = max(owners, key=lambda i: (w[(i, j)], -i))
            assert r.matched_idxs[j] == best and r.labels[j] == CLASSES[0][best]
    assert results[1].labels.eq(K).all()


def _model(seed=0):
    cfg = LazyConfig.load(str(REPO / CFG))
    torch.manual_seed(seed)
    model = instantiate(cfg.model)
    model.train()
    return model


def test_gradients_reach_center_prior_objectness_and_box_branch():
    model = _model()
    batch = random_batch(num_images=2, image_size=(64, 96), num_boxes=3, num_classes=7)
    with EventStorage():
        losses = model(batch)
    # the positive loss alone reaches mu and sigma: w+ is not detached
    losses["loss_pos"].backward(retain_graph=True)
    mu, sigma = model.assigner.mu, model.assigner.sigma
    present = torch.unique(torch.cat([b["instances"].gt_classes for b in batch]))
    absent = torch.tensor([c for c in range(7) if c not in present.tolist()], dtype=torch.long)
    assert mu.grad[present].abs().sum(dim=1).gt(0).all()
    assert sigma.grad[present].abs().sum(dim=1).gt(0).all()
    assert mu.grad[absent].eq(0).all() and sigma.grad[absent].eq(0).all()
    head = model.head
    for p in (head.quality_pred.weight, head.bbox_pred.weight, head.cls_score.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the center term reaches mu, sigma on its own as well
    model.zero_grad()
    losses["loss_center"].backward()
    assert sigma.grad[present].abs().sum() > 0


def test_image_without_gt_keeps_every_parameter_in_the_graph():
    model = _model()
    batch = random_batch(num_images=2, image_size=(64, 96), num_boxes=3, num_classes=7)
    for item in batch:
        item["instances"] = item["instances"][:0]
    with EventStorage():
        losses = model(batch)
    assert losses["loss_pos"].item() == 0.0 and losses["loss_center"].item() == 0.0
    assert losses["loss_neg"].item() > 0.0
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert model.assigner.mu.grad.eq(0).all() and model.assigner.sigma.grad.eq(0).all()


def test_gt_smaller_than_a_stride_falls_back_to_nearest_points():
    priors = make_priors(image_size=(64, 64), strides=(8, 16, 32), offset=0.0)
    R = len(priors)
    gt = make_instances([[9.2, 9.0, 15.0, 14.2], [20.0, 20.0, 60.0, 50.0]], [1, 0], (64, 64))
    g = torch.Generator().manual_seed(0)
    preds = DensePredictions(
        logits=torch.randn(1, R, K, generator=g),
        deltas=torch.rand(1, R, 4, generator=g),
        quality=torch.randn(1, R, 1, generator=g),
        features=[],
    )
    assigner = AutoAssign(num_classes=K)
    r = assigner(priors, gt, predictions=preds.image(0), image_size=(64, 64))
    assert r.stats["gt_fallback"] == 1.0
    pw = r.pairwise
    chosen = sorted(pw["point_idx"][pw["gt_idx"] == 0].tolist())
    d = (priors.centers - torch.tensor([12.1, 11.6])) / priors.strides[:, None]
    expected = sorted(torch.argsort((d**2).sum(1), stable=True)[:9].tolist())
    assert chosen == expected
    with EventStorage():
        losses = AutoAssignLoss(num_classes=K)(priors=priors, predictions=preds, assignments=[r])
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["loss_center"].item() < 10.0  # not #GT / 1e-12
    # the bag of the tiny GT is not empty: its weights sum to 1
    assert pw["w_plus"][pw["gt_idx"] == 0].sum().item() == pytest.approx(1.0, rel=1e-5)


def test_chunked_equals_unchunked():
    priors = make_priors(image_size=(128, 160), strides=(8, 16, 32, 64, 128), offset=0.0)
    R = len(priors)
    batch = random_batch(num_images=1, image_size=(128, 160), num_boxes=40, num_classes=K, seed=3)
    gt = batch[0]["instances"]
    tiny = make_instances([[33.0, 41.0, 38.0, 46.0]], [1], (128, 160))  # no point inside
    gt = type(gt).cat([gt, tiny])
    g = torch.Generator().manual_seed(1)
    preds = DensePredictions(
        logits=torch.randn(1, R, K, generator=g),
        deltas=torch.rand(1, R, 4, generator=g) * 3,
        quality=torch.randn(1, R, 1, generator=g),
        features=[],
    )
    outputs = []
    for chunk in (1 << 30, 2 * R):  # unchunked, and 2 GTs a chunk
        assigner = AutoAssign(num_classes=K, chunk_pairs=chunk)
        with torch.no_grad():
            assigner.mu.copy_(torch.tensor(MU))
            assigner.sigma.copy_(torch.tensor(SIGMA))
        r = assigner(priors, gt, predictions=preds.image(0), image_size=(128, 160))
        losses = AutoAssignLoss(num_classes=K)(priors=priors, predictions=preds, assignments=[r])
        outputs.append((r, losses))
    (a, la), (b, lb) = outputs
    assert a.stats["gt_fallback"] == 1.0 and b.stats["gt_fallback"] == 1.0
    assert torch.equal(a.labels, b.labels) and torch.equal(a.matched_idxs, b.matched_idxs)
    for key in ("gt_idx", "point_idx", "neg_point", "neg_class"):
        assert torch.equal(a.pairwise[key], b.pairwise[key]), key
    for key in ("center_prior", "pos_conf", "w_plus", "neg_fg"):
        torch.testing.assert_close(a.pairwise[key], b.pairwise[key], rtol=1e-6, atol=0.0)
    for key in la:
        torch.testing.assert_close(la[key], lb[key], rtol=1e-6, atol=0.0)


def test_ablation_switches_and_validation():
    assert AutoAssign(num_classes=3).mu.shape == (3, 2)
    assert AutoAssign(num_classes=3, center_prior="shared").sigma.shape == (1, 2)
    fixed = AutoAssign(num_classes=3, center_prior="fixed")
    assert not list(fixed.parameters()) and fixed.mu.shape == (1, 2)
    assert not list(AutoAssign(num_classes=3, center_prior="none").parameters())
    with pytest.raises(ValueError, match="center_prior"):
        AutoAssign(num_classes=3, center_prior="learned")
    with pytest.raises(ValueError, match="confidence"):
        AutoAssign(num_classes=3, confidence="iou")
    with pytest.raises(ValueError, match="objectness"):
        AutoAssignLoss(num_classes=3, objectness="explicit")
    # confidence "none": w+ = G / sum G exactly
    priors, preds, gts = _tiny_case()
    assigner = AutoAssign(num_classes=K, confidence="none").double()
    results, _ = _run(assigner, priors, preds, gts)
    pw = results[0].pairwise
    g_sum = torch.zeros(3, dtype=torch.float64).index_add(0, pw["gt_idx"], pw["center_prior"])
    torch.testing.assert_close(pw["w_plus"], pw["center_prior"] / g_sum[pw["gt_idx"]])


def test_decoding_the_pairs_points_equals_decoding_every_prior(monkeypatch):
    # the assigner decodes the head's boxes at the distinct points of its pairs; with every prior
    # as a "point" it decodes them all, as it did before: the pairwise values, the loss and the
    # gradients into the head's outputs and the centre prior are the same bit for bit
    from dense_assign.assigners import autoassign as module

    priors = make_priors(image_size=(128, 160), strides=(8, 16, 32, 64, 128), offset=0.0)
    R = len(priors)
    batch = random_batch(num_images=1, image_size=(128, 160), num_boxes=30, num_classes=K, seed=5)
    tiny = make_instances([[33.0, 41.0, 38.0, 46.0]], [1], (128, 160))  # the fallback too
    gt = type(tiny).cat([batch[0]["instances"], tiny])
    g = torch.Generator().manual_seed(2)
    heads = [torch.randn(1, R, K, generator=g), torch.rand(1, R, 4, generator=g) * 3]
    heads.append(torch.randn(1, R, 1, generator=g))
    every = lambda pt_idx, num_points: (torch.arange(num_points), pt_idx)  # noqa: E731
    runs = []
    for pair_points in (module._pair_points, every):
        monkeypatch.setattr(module, "_pair_points", pair_points)
        leaves = [h.clone().requires_grad_() for h in heads]
        preds = DensePredictions(*leaves, features=[])
        assigner = AutoAssign(num_classes=K)
        with torch.no_grad():
            assigner.mu.copy_(torch.tensor(MU))
            assigner.sigma.copy_(torch.tensor(SIGMA))
        r = assigner(priors, gt, predictions=preds.image(0), image_size=(128, 160))
        losses = AutoAssignLoss(num_classes=K)(priors=priors, predictions=preds, assignments=[r])
        sum(losses.values()).backward()
        grads = [x.grad for x in leaves] + [assigner.mu.grad, assigner.sigma.grad]
        runs.append((r, losses, grads))
    (a, la, ga), (b, lb, gb) = runs
    assert a.stats["gt_fallback"] == 1.0
    assert torch.equal(a.labels, b.labels) and torch.equal(a.matched_idxs, b.matched_idxs)
    for key, value in a.pairwise.items():
        assert torch.equal(value, b.pairwise[key]), key
    for key in la:
        assert torch.equal(la[key], lb[key]), key
    for x, y in zip(ga, gb):
        assert torch.equal(x, y) and (x != 0).any()

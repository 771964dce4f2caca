"""DenseLoss on small hand-checked inputs."""

import math

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.utils.events import EventStorage
from fvcore.nn import giou_loss, sigmoid_focal_loss

from dense_assign.box_ops import centerness, ltrb, pair_iou
from dense_assign.losses import DenseLoss
from dense_assign.structures import AssignResult, DensePredictions

from ..helpers import make_priors

K = 2


def _setup(labels, matched, seed=0):
    priors = make_priors(image_size=(16, 16), strides=(8,))  # 4 points: (4,4) (12,4) (4,12) (12,12)
    g = torch.Generator().manual_seed(seed)
    preds = DensePredictions(
        logits=torch.randn(1, 4, K, generator=g, requires_grad=True),
        deltas=(torch.rand(1, 4, 4, generator=g) + 0.2).requires_grad_(),
        quality=torch.randn(1, 4, 1, generator=g, requires_grad=True),
        features=[],
    )
    labels = torch.tensor(labels)
    matched_boxes = torch.tensor(matched, dtype=torch.float32)
    result = AssignResult(
        labels=labels, matched_idxs=torch.where(labels < K, 0, -1), matched_gt_boxes=matched_boxes
    )
    return priors, preds, [result]


GT = [0.0, 0.0, 14.0, 10.0]
Z = [0.0, 0.0, 0.0, 0.0]


def test_official_fcos_loss_by_hand():
    priors, preds, assign = _setup([0, 1, K, -1], [GT, GT, Z, Z])
    loss = DenseLoss(
        num_classes=K, box_weighting="centerness", quality="centerness", normalizer="num_pos"
    )
    tf = Box2BoxTransformLinear(normalize_by_size=True)
    out = loss(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    # classification: priors 0..2 (prior 3 ignored), one-hot targets, / num_pos = 2
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    cls = sigmoid_focal_loss(preds.logits[0, :3], target, 0.25, 2.0, reduction="sum") / 2
    assert out["loss_cls"].item() == pytest.approx(cls.item(), rel=1e-6)
    # box: GIoU of the decoded boxes of priors 0, 1, weighted by centerness, / sum(centerness)
    pts = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
    gt = torch.tensor([GT, GT])
    ctr = centerness(ltrb(pts, gt))
    # hand: point (4,4): l=4 r=10 t=4 b=6 -> sqrt(0.4 * 0.6667); point (12,4): l=12 r=2 -> sqrt(1/6 * 2/3)
    assert ctr.tolist() == pytest.approx(
        [math.sqrt(0.4 * 4 / 6), math.sqrt(2 / 12 * 4 / 6)], rel=1e-6
    )
    boxes = tf.apply_deltas(preds.deltas[0, :2], priors.boxes[:2])
    box = (giou_loss(boxes, gt, reduction="none") * ctr).sum() / ctr.sum()
    assert out["loss_box_reg"].item() == pytest.approx(box.item(), rel=1e-6)
    bce = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            preds.quality[0, :2, 0], ctr, reduction="sum"
        )
        / 2
    )
    assert out["loss_centerness"].item() == pytest.approx(bce.item(), rel=1e-6)


def test_ema_normalizer_is_a_checkpointed_buffer():
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    loss = DenseLoss(num_classes=K, normalizer="ema", ema_init=100.0)
    tf = Box2BoxTransformLinear()
    loss(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    assert loss.ema_num_pos.item() == pytest.approx(100 * 0.9 + 2 * 0.1)
    assert "ema_num_pos" in loss.state_dict()
    loss.eval()  # evaluation does not move the EMA
    loss(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    assert loss.ema_num_pos.item() == pytest.approx(90.2)


def test_no_positive_gives_zero_losses_that_reach_every_output():
    priors, preds, assign = _setup([K, K, K, K], [Z, Z, Z, Z])
    loss = DenseLoss(num_classes=K, quality="iou", box_loss="giou")
    out = loss(
        priors=priors,
        predictions=preds,
        assignments=assign,
        box2box_transform=Box2BoxTransformLinear(),
    )
    assert out["loss_box_reg"].item() == 0 and out["loss_iou"].item() == 0
    sum(out.values()).backward()
    for t in (preds.logits, preds.deltas, preds.quality):
        assert t.grad is not None


def test_iou_quality_target_gradient_switch():
    for grad in (True, False):
        priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
        loss = DenseLoss(num_classes=K, quality="iou", iou_target_grad=grad)
        out = loss(
            priors=priors,
            predictions=preds,
            assignments=assign,
            box2box_transform=Box2BoxTransformLinear(),
        )
        out["loss_iou"].backward()
        grad_in = preds.deltas.grad
        got = 0.0 if grad_in is None else grad_in[0, :2].abs().sum().item()
        assert (got > 0) == grad


def test_soft_weights_scale_losses_and_normalizer():
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    loss = DenseLoss(num_classes=K)
    tf = Box2BoxTransformLinear()
    assign[0].loss_weights = torch.tensor([0.5, 0.25, 1.0, 1.0])
    out = loss(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    # normalizer = max(sum of positive weights, 1) = 1 ; cls loss of positives weighted
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    w = torch.tensor([0.5, 0.25, 1.0, 1.0])[:, None]
    cls = (sigmoid_focal_loss(preds.logits[0], target, 0.25, 2.0, reduction="none") * w).sum()
    assert out["loss_cls"].item() == pytest.approx(cls.item(), rel=1e-6)


def test_soft_classification_targets_focal_and_quality_focal():
    tf = Box2BoxTransformLinear()
    soft = torch.tensor([0.6, 0.3, 0.9, 0.9])  # read at the positives only
    hard_target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    soft_target = torch.tensor([[0.6, 0.0], [0.0, 0.3], [0.0, 0.0], [0.0, 0.0]])
    for kwargs, target in (
        ({}, soft_target),
        ({"use_cls_targets": False}, hard_target),
    ):
        priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
        assign[0].cls_targets = soft
        out = DenseLoss(num_classes=K, **kwargs)(
            priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
        )
        want = sigmoid_focal_loss(preds.logits[0], target, 0.25, 2.0, reduction="sum") / 2
        assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6), kwargs
    # GFL's quality focal loss: |y - p|^beta x BCE(p, y), every channel
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    assign[0].cls_targets = soft
    out = DenseLoss(num_classes=K, cls_loss="quality_focal", qfl_beta=2.0)(
        priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
    )
    p = preds.logits[0].sigmoid()
    y = soft_target
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    want = ((y - p).abs() ** 2 * bce).sum() / 2
    assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-5)


def test_box_loss_weighted_by_soft_targets():
    tf = Box2BoxTransformLinear()
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    assign[0].cls_targets = torch.tensor([0.6, 0.2, 1.0, 1.0])
    out = DenseLoss(num_classes=K, box_loss="iou", box_weighting="cls_target")(
        priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
    )
    pred = tf.apply_deltas(preds.deltas[0, :2], priors.boxes[:2])
    per = -torch.log(pair_iou(pred, torch.tensor([GT, GT])).clamp(min=1e-6))
    want = (per * torch.tensor([0.6, 0.2])).sum() / 0.8
    assert out["loss_box_reg"].item() == pytest.approx(want.item(), rel=1e-5)
    # an assigner without soft targets: a clear error
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    with pytest.raises(ValueError, match="box_weighting='cls_target' needs an assigner"):
        DenseLoss(num_classes=K, box_weighting="cls_target")(
            priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
        )


def test_normalizer_from_the_sum_of_soft_targets():
    tf = Box2BoxTransformLinear()
    priors, preds, assign = _setup([0, 1, K, K], [GT, GT, Z, Z])
    assign[0].cls_targets = torch.tensor([0.9, 0.6, 1.0, 1.0])  # positives sum to 1.5
    out = DenseLoss(
        num_classes=K,
        box_loss="iou",
        box_weighting="cls_target",
        normalizer="cls_target_sum",
    )(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    target = torch.tensor([[0.9, 0.0], [0.0, 0.6], [0.0, 0.0], [0.0, 0.0]])
    want = sigmoid_focal_loss(preds.logits[0], target, 0.25, 2.0, reduction="sum") / 1.5
    assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6)
    pred = tf.apply_deltas(preds.deltas[0, :2], priors.boxes[:2])
    per = -torch.log(pair_iou(pred, torch.tensor([GT, GT])).clamp(min=1e-6))
    want_box = (per * torch.tensor([0.9, 0.6])).sum() / 1.5
    assert out["loss_box_reg"].item() == pytest.approx(want_box.item(), rel=1e-5)
    # small sums are floored at 1, as the counts are
    assign[0].cls_targets = torch.tensor([0.2, 0.1, 1.0, 1.0])
    out = DenseLoss(num_classes=K, normalizer="cls_target_sum")(
        priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
    )
    target = torch.tensor([[0.2, 0.0], [0.0, 0.1], [0.0, 0.0], [0.0, 0.0]])
    want = sigmoid_focal_loss(preds.logits[0], target, 0.25, 2.0, reduction="sum")
    assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6)
    assign[0].cls_targets = None
    with pytest.raises(ValueError, match="normalizer='cls_target_sum' needs an assigner"):
        DenseLoss(num_classes=K, normalizer="cls_target_sum")(
            priors=priors, predictions=preds, assignments=assign, box2box_transform=tf
        )


def test_pair_iou():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [4.0, 4.0, 6.0, 6.0]])
    assert pair_iou(a, b).tolist() == pytest.approx([50 / 150, 0.0])


def test_loss_rejects_bad_options():
    with pytest.raises(ValueError, match="model.loss.box_loss"):
        DenseLoss(num_classes=K, box_loss="l2")
    with pytest.raises(ValueError, match="model.loss.normalizer"):
        DenseLoss(num_classes=K, normalizer="batch")
    with pytest.raises(ValueError, match="model.loss.box_weight"):
        DenseLoss(num_classes=K, box_weight=-1.0)

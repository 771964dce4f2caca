"""DenseLoss, DenseHead and the score functions on small hand-checked inputs."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.utils.events import EventStorage
from fvcore.nn import giou_loss, sigmoid_focal_loss

from dense_assign.heads import DenseHead
from dense_assign.losses import DenseLoss, aligned_iou, centerness_targets
from dense_assign.meta_arch.scoring import compute_scores
from dense_assign.structures import AssignResult, DensePredictions

from .helpers import make_priors

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
    ctr = centerness_targets(pts, gt)
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
    assign[0].pos_weights = torch.tensor([0.5, 0.25, 1.0, 1.0])
    out = loss(priors=priors, predictions=preds, assignments=assign, box2box_transform=tf)
    # normalizer = max(sum of positive weights, 1) = 1 ; cls loss of positives weighted
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    w = torch.tensor([0.5, 0.25, 1.0, 1.0])[:, None]
    cls = (sigmoid_focal_loss(preds.logits[0], target, 0.25, 2.0, reduction="none") * w).sum()
    assert out["loss_cls"].item() == pytest.approx(cls.item(), rel=1e-6)


def test_aligned_iou():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [4.0, 4.0, 6.0, 6.0]])
    assert aligned_iou(a, b).tolist() == pytest.approx([50 / 150, 0.0])


def test_loss_rejects_bad_options():
    with pytest.raises(ValueError, match="model.loss.box_loss"):
        DenseLoss(num_classes=K, box_loss="l2")
    with pytest.raises(ValueError, match="model.loss.normalizer"):
        DenseLoss(num_classes=K, normalizer="batch")
    with pytest.raises(ValueError, match="model.loss.box_weight"):
        DenseLoss(num_classes=K, box_weight=-1.0)


# ----------------------------------------------------------------------------- head
def _head(**kw):
    args = dict(input_shape=[ShapeSpec(channels=8)] * 2, num_classes=3, conv_dims=[8, 8], norm="")
    args.update(kw)
    return DenseHead(**args)


def test_head_outputs_and_init():
    torch.manual_seed(0)
    head = _head(num_anchors=2, quality="iou", bbox_reg_bias=4.0, prior_prob=0.02)
    feats = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 3)]
    logits, deltas, quality = head(feats)
    assert [x.shape for x in logits] == [(2, 6, 6, 5), (2, 6, 3, 3)]
    assert [x.shape for x in deltas] == [(2, 8, 6, 5), (2, 8, 3, 3)]
    assert [x.shape for x in quality] == [(2, 2, 6, 5), (2, 2, 3, 3)]
    assert head.cls_score.bias[0].item() == pytest.approx(-math.log(0.98 / 0.02))
    assert head.bbox_pred.bias[0].item() == 4.0
    # Scale multiplies the box output of its level only
    head.scales[1].scale.data.fill_(2.0)
    _, deltas2, _ = head(feats)
    assert torch.allclose(deltas2[0], deltas[0]) and torch.allclose(deltas2[1], 2 * deltas[1])


def test_head_quality_tower_choice():
    torch.manual_seed(0)
    head = _head(quality="centerness", quality_tower="cls")
    feats = [torch.randn(1, 8, 4, 4)] * 2
    _, _, q = head(feats)
    q[0].sum().backward()
    assert head.cls_subnet[0].weight.grad is not None and head.bbox_subnet[0].weight.grad is None
    assert _head()(feats)[2] == []


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(conv_dims=[]), "conv_dims"),
        (dict(quality="ctr"), "quality"),
        (dict(quality_tower="neck"), "quality_tower"),
        (dict(prior_prob=1.5), "prior_prob"),
    ],
)
def test_head_rejects_bad_config(kw, key):
    with pytest.raises(ValueError, match=f"model.head.{key}"):
        _head(**kw)


# ----------------------------------------------------------------------------- scoring
def test_score_functions():
    cls = torch.tensor([[0.04, 0.64]])
    q = torch.tensor([[0.25]])

    def close(t, values):
        return torch.allclose(t, torch.tensor([values]), atol=1e-6)

    gate, score = compute_scores("sqrt_cls_quality_gated", cls, q)
    assert close(gate, [0.04, 0.64]) and close(score, [0.1, 0.4])
    gate, score = compute_scores("sqrt_cls_quality", cls, q)
    assert close(gate, [0.1, 0.4]) and close(score, [0.1, 0.4])
    gate, score = compute_scores("cls_quality_gated", cls, q)
    assert close(gate, [0.04, 0.64]) and close(score, [0.01, 0.16])
    gate, score = compute_scores("cls_quality", cls, q)
    assert close(gate, [0.01, 0.16]) and close(score, [0.01, 0.16])
    _, score = compute_scores("cls_pow_quality", cls, q, alpha=0.5)
    assert close(score, [0.1, 0.4])
    _, score = compute_scores("cls_pow_quality", cls, q, alpha=1.0)
    assert close(score, [0.04, 0.64])
    with pytest.raises(ValueError, match="quality"):
        compute_scores("cls_quality", cls, None)

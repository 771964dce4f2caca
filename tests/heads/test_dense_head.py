"""DenseHead: output shapes, initialization, the quality tower, bad configs."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from dense_assign.heads import DenseHead


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

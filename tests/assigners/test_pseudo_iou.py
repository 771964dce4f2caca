"""Pseudo-IoU: closed form vs explicit IoU, threshold semantics, T = 0 is the AF-baseline."""

import pytest
import torch

from dense_assign.assigners import InsideBoxAssigner, PseudoIoUAssigner, pseudo_iou
from dense_assign.box_ops import pair_iou

from ..helpers import make_instances, make_priors

K = 2


def test_point_at_centre_has_piou_one():
    assert (
        pseudo_iou(torch.tensor([[5.0, 7.0]]), torch.tensor([[0.0, 2.0, 10.0, 12.0]])).item() == 1.0
    )


def test_closed_form_equals_explicit_iou():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2000, 2, generator=g) * 100
    wh = 1 + torch.rand(2000, 2, generator=g) * 80
    boxes = torch.cat([xy, xy + wh], dim=1)
    pts = xy + torch.rand(2000, 2, generator=g) * wh  # inside
    pseudo = torch.cat([pts - wh / 2, pts + wh / 2], dim=1)
    assert torch.allclose(pseudo_iou(pts, boxes), pair_iou(pseudo, boxes), atol=1e-5)


def test_point_exactly_at_threshold_is_background():
    # stride 4: points at 2, 6, 10, ...; GT 8x8 centred at (4, 2): point (6, 2) has dx = 2, dy = 0,
    # PIoU = (8 - 2) / (8 + 2) = 0.6 exactly
    priors = make_priors(image_size=(16, 16), strides=(4,))
    gt = make_instances([[0.0, -2.0, 8.0, 6.0]], [0], (16, 16))
    pt = torch.tensor([[6.0, 2.0]])
    assert pseudo_iou(pt, gt.gt_boxes.tensor).item() == pytest.approx(0.6)
    idx = int(((priors.centers - pt).abs().sum(1) == 0).nonzero())
    at = PseudoIoUAssigner(num_classes=K, threshold=0.6, scale_ranges=None)(priors, gt)
    below = PseudoIoUAssigner(num_classes=K, threshold=0.59, scale_ranges=None)(priors, gt)
    assert at.labels[idx].item() == K  # PIoU <= T -> background (negative), not ignored (-1)
    assert below.labels[idx].item() == 0


def _random_gt(seed, n=20, size=(256, 320)):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([280.0, 220.0])
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 150], dim=1)
    return make_instances(boxes, torch.randint(0, K, (n,), generator=g), size)


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_zero_is_the_af_baseline(seed):
    priors = make_priors(image_size=(256, 320), strides=(8, 16, 32, 64, 128))
    gt = _random_gt(seed)
    a = PseudoIoUAssigner(num_classes=K, threshold=0.0)(priors, gt)
    b = InsideBoxAssigner(num_classes=K)(priors, gt)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.matched_idxs, b.matched_idxs)


def test_filter_only_removes_and_keeps_near_centre():
    priors = make_priors(image_size=(256, 320), strides=(8, 16, 32, 64, 128))
    gt = _random_gt(3)
    base = InsideBoxAssigner(num_classes=K)(priors, gt)
    r = PseudoIoUAssigner(num_classes=K, threshold=0.4)(priors, gt)
    kept = r.labels != K
    assert (base.labels[kept] == r.labels[kept]).all()  # a subset of the baseline's positives
    assert kept.sum() < (base.labels != K).sum()
    piou = pseudo_iou(priors.centers[kept], r.matched_gt_boxes[kept])
    assert (piou > 0.4).all()
    dropped = (base.labels != K) & ~kept
    assert (pseudo_iou(priors.centers[dropped], base.matched_gt_boxes[dropped]) <= 0.4).all()
    assert r.stats["baseline_pos"] == float((base.labels != K).sum())


def test_alternative_metrics():
    priors = make_priors(image_size=(64, 64), strides=(8,))
    gt = make_instances([[0.0, 0.0, 64.0, 32.0]], [1], (64, 64))  # centre (32, 16)
    sb = PseudoIoUAssigner(num_classes=K, metric="scaled_box", threshold=0.3, scale_ranges=None)(
        priors, gt
    )
    # |x - 32| < 9.6 and |y - 16| < 4.8: x in {28, 36}, y in {12, 20}
    assert sorted((sb.labels != K).nonzero().flatten().tolist()) == [11, 12, 19, 20]
    ctr = PseudoIoUAssigner(num_classes=K, metric="centerness", threshold=0.6, scale_ranges=None)(
        priors, gt
    )
    # (28, 12): sqrt(28/36 * 12/20) = 0.683; (20, 12): 0.522; (28, 4): 0.33 -> the 4 central points
    assert sorted((ctr.labels != K).nonzero().flatten().tolist()) == [11, 12, 19, 20]
    with pytest.raises(ValueError, match="model.assigner.metric"):
        PseudoIoUAssigner(num_classes=K, metric="giou")

"""Hand-computed cases for the foundation assigners (FCOS, inside-box, max-IoU)."""

import pytest
import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou

from dense_assign.assigners import FCOSAssigner, InsideBoxAssigner, MaxIoUAssigner

from ..helpers import make_instances, make_priors

# 32x32 image, level 0 (stride 8): points at 4, 12, 20, 28 -> indices row * 4 + col (0..15);
# level 1 (stride 16): points at 8, 24 -> indices 16 + row * 2 + col.
A = [0.0, 0.0, 20.0, 20.0]  # area 400, class 0
B = [6.0, 6.0, 30.0, 30.0]  # area 576, class 1
K = 2


def _positives(result):
    return {
        int(i): int(result.matched_idxs[i]) for i in torch.nonzero(result.labels != K).flatten()
    }


def test_fcos_hand_case():
    priors = make_priors()
    gt = make_instances([A, B], [0, 1], (32, 32))
    assigner = FCOSAssigner(
        num_classes=K, center_sampling_radius=1.5, scale_ranges=[(0, 16), (16, 1e8)]
    )
    r = assigner(priors, gt)
    # A: the four level-0 points with max(ltrb) <= 16 inside it; (20, y) lies on A's edge (r = 0).
    # B: level-0 point (20, 20) (max(ltrb) = 14); (12, 12) has max 18 > 16 there. Level 1: all four
    #    points of B have max(ltrb) in [16, inf) and lie within 1.5 * 16 of its centre.
    assert _positives(r) == {0: 0, 1: 0, 4: 0, 5: 0, 10: 1, 16: 1, 17: 1, 18: 1, 19: 1}
    assert r.labels[10].item() == 1 and r.labels[0].item() == 0
    assert torch.equal(r.matched_gt_boxes[10], torch.tensor(B))
    assert torch.equal(r.matched_gt_boxes[3], torch.zeros(4))
    assert r.stats["num_pos"] == 9 and r.stats["gt_without_pos"] == 0


def test_fcos_center_sampling_radius_limits_candidates():
    priors = make_priors(image_size=(64, 64), strides=(8,))
    gt = make_instances([[0.0, 0.0, 64.0, 16.0]], [0], (64, 64))  # centre (32, 8)
    r = FCOSAssigner(num_classes=K, center_sampling_radius=1.0, scale_ranges=None)(priors, gt)
    # |x - 32| < 8 -> x in {28, 36}; |y - 8| < 8 -> y = 4, 12: points (28|36, 4|12)
    assert sorted(_positives(r)) == [3, 4, 11, 12]
    r = FCOSAssigner(num_classes=K, center_sampling_radius=None, scale_ranges=None)(priors, gt)
    assert len(_positives(r)) == 16  # every point strictly inside


def test_min_area_tie_break_and_inside_box():
    priors = make_priors()
    gt = make_instances([B, A], [1, 0], (32, 32))  # A is now GT 1
    r = InsideBoxAssigner(num_classes=K, scale_ranges=None)(priors, gt)
    pos = _positives(r)
    # (12, 12) is inside both: the smaller A (index 1) wins; (20, 20) only inside B
    assert pos[5] == 1 and pos[10] == 0
    # level 1 point (8, 8) is inside both as well -> A
    assert pos[16] == 1
    # every level-0 point inside A is A's
    assert all(pos[i] == 1 for i in (0, 1, 4, 5))


def test_inclusive_vs_strict_ranges_on_the_bound():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    # point (4, 4): l = t = 4, r = b = 16 -> max(ltrb) = 16 exactly on the bound
    gt = make_instances([[0.0, 0.0, 20.0, 20.0]], [0], (32, 32))
    incl = FCOSAssigner(num_classes=K, center_sampling_radius=None, scale_ranges=[(0, 16)])(
        priors, gt
    )
    strict = FCOSAssigner(
        num_classes=K, center_sampling_radius=None, scale_ranges=[(0, 16)], inclusive_ranges=False
    )(priors, gt)
    assert 0 in _positives(incl) and 0 not in _positives(strict)


def test_point_on_box_edge_is_not_inside():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    gt = make_instances([[4.0, 4.0, 12.0, 12.0]], [0], (32, 32))  # (4, 4) is the corner
    r = InsideBoxAssigner(num_classes=K, scale_ranges=None)(priors, gt)
    assert _positives(r) == {}
    assert r.stats["gt_without_pos"] == 1


def test_gt_chunks_give_the_same_result():
    priors = make_priors(image_size=(128, 128), strides=(8, 16, 32))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 4 + torch.rand(60, 2, generator=g) * 60], dim=1)
    gt = make_instances(boxes, torch.randint(0, K, (60,), generator=g), (128, 128))
    for cls in (FCOSAssigner, InsideBoxAssigner, MaxIoUAssigner):
        whole = cls(num_classes=K)(priors, gt)
        chunked = cls(num_classes=K, chunk_pairs=len(priors) * 7)(priors, gt)  # 7 GTs a chunk
        assert torch.equal(whole.labels, chunked.labels), cls
        assert torch.equal(whole.matched_idxs, chunked.matched_idxs), cls


def _retina_priors(image_size=(96, 128)):
    gen = DefaultAnchorGenerator(
        sizes=[[x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in (16, 32)],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=[8, 16],
        offset=0.0,
    )
    return make_priors(image_size=image_size, anchor_generator=gen)


def test_max_iou_equals_detectron2_matcher():
    priors = _retina_priors()
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(12, 2, generator=g) * torch.tensor([100.0, 70.0])
    boxes = torch.cat([xy, xy + 8 + torch.rand(12, 2, generator=g) * 40], dim=1)
    classes = torch.randint(0, K, (12,), generator=g)
    gt = make_instances(boxes, classes, (96, 128))
    r = MaxIoUAssigner(num_classes=K)(priors, gt)
    matcher = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
    idx, lab = matcher(pairwise_iou(Boxes(boxes), Boxes(priors.boxes)))
    expected = classes[idx].clone()
    expected[lab == 0] = K
    expected[lab == -1] = -1
    assert torch.equal(r.labels, expected)
    fg = lab == 1
    assert torch.equal(r.matched_idxs[fg], idx[fg])
    assert torch.equal(r.matched_gt_boxes[fg], boxes[idx[fg]])
    assert (r.labels == -1).any() and (r.labels < K).sum() > 0


def test_max_iou_hand_case_low_quality_match():
    # one anchor box per location, 16x16 at stride 16, centres at k * 16
    gen = DefaultAnchorGenerator(sizes=[[16]], aspect_ratios=[1.0], strides=[16], offset=0.0)
    priors = make_priors(image_size=(32, 32), anchor_generator=gen)
    # anchors: [-8,-8,8,8], [8,-8,24,8], [-8,8,8,24], [8,8,24,24]
    gt = make_instances([[8.0, 8.0, 24.0, 24.0], [0.0, 0.0, 12.0, 4.0]], [1, 0], (32, 32))
    r = MaxIoUAssigner(num_classes=K)(priors, gt)
    # GT 0 equals anchor 3 (IoU 1). GT 1 (area 48): IoU with anchor 0 = 32 / 272 = 0.118 (its
    # best, below 0.4): a low-quality match keeps it foreground.
    assert r.labels.tolist() == [0, K, K, 1]
    assert r.matched_idxs.tolist() == [1, -1, -1, 0]
    no_lq = MaxIoUAssigner(num_classes=K, allow_low_quality_matches=False)(priors, gt)
    assert no_lq.labels.tolist() == [K, K, K, 1]


def test_max_iou_low_quality_gt_best_or_claimant():
    # a small GT inside a GT that equals an anchor: both have that anchor as their best
    gen = DefaultAnchorGenerator(sizes=[[16]], aspect_ratios=[1.0], strides=[16], offset=0.0)
    priors = make_priors(image_size=(32, 32), anchor_generator=gen)
    gt = make_instances([[8.0, 8.0, 24.0, 24.0], [10.0, 10.0, 14.0, 14.0]], [1, 0], (32, 32))
    # "best" (detectron2): anchor 3 stays with its best GT 0 (IoU 1); GT 1 (IoU 16 / 256) has none
    r = MaxIoUAssigner(num_classes=K)(priors, gt)
    assert r.labels.tolist() == [K, K, K, 1] and r.matched_idxs.tolist() == [-1, -1, -1, 0]
    # "claimant" (mmdetection): every GT claims its best anchor, the later GT overwrites
    r = MaxIoUAssigner(num_classes=K, low_quality_gt="claimant")(priors, gt)
    assert r.labels.tolist() == [K, K, K, 0] and r.matched_idxs.tolist() == [-1, -1, -1, 1]
    with pytest.raises(ValueError, match="model.assigner.low_quality_gt='last'"):
        MaxIoUAssigner(num_classes=K, low_quality_gt="last")


def test_max_iou_ignore_band():
    gen = DefaultAnchorGenerator(sizes=[[16]], aspect_ratios=[1.0], strides=[16], offset=0.0)
    priors = make_priors(image_size=(32, 32), anchor_generator=gen)
    # GT [8, 8, 24, 20] vs anchor 3 [8, 8, 24, 24]: IoU = 192 / 256 = 0.75 -> fg.
    # GT [-8, -8, 8, 0.5] vs anchor 0: IoU = 136 / 256 = 0.53 -> fg; with fg_from 0.6 it is in
    # [0.4, 0.6): ignored, unless low-quality matching rescues it (it is that GT's best).
    gt = make_instances([[8.0, 8.0, 24.0, 20.0], [-8.0, -8.0, 8.0, 0.5]], [0, 1], (32, 32))
    r = MaxIoUAssigner(num_classes=K, thresholds=[0.4, 0.6], allow_low_quality_matches=False)(
        priors, gt
    )
    assert r.labels.tolist() == [-1, K, K, 0]
    assert r.matched_idxs[0].item() == 1  # ignored anchors keep their best GT
    with pytest.raises(ValueError, match="thresholds"):
        MaxIoUAssigner(num_classes=K, thresholds=[0.6, 0.4])


def test_priors_level_starts():
    # 40 x 24 image, strides 8 / 16: 5 x 3 = 15 and 3 x 2 = 6 points
    priors = make_priors(image_size=(24, 40), strides=(8, 16))
    assert priors.level_sizes == [15, 6]
    assert priors.level_starts == [0, 15]
    for level, start in enumerate(priors.level_starts):
        assert int(priors.levels[start]) == level
        assert start == 0 or int(priors.levels[start - 1]) == level - 1


def test_match_tensors_from_positives_equal_the_fixed_shape_gathers():
    # the CPU builds labels and boxes from the positives' indices, a GPU with fixed-shape
    # gathers (no read of the number of positives): the same tensors
    from dense_assign.assigners.base import match_tensors

    g = torch.Generator().manual_seed(0)
    M, R, K = 7, 500, 5
    boxes = torch.rand(M, 4, generator=g) * 100
    boxes[:, 2:] += boxes[:, :2]
    classes = torch.randint(0, K, (M,), generator=g)
    matched = torch.randint(-1, M - 2, (R,), generator=g)  # GTs M-2, M-1 without a positive
    matched[torch.rand(R, generator=g) < 0.6] = -1
    ignore = torch.rand(R, generator=g) < 0.3
    for ign in (None, ignore):
        a = match_tensors(matched, classes, boxes, K, ign, from_positives=True)
        b = match_tensors(matched, classes, boxes, K, ign, from_positives=False)
        assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))
        labels, matched_boxes, per_gt = a
        pos = matched >= 0
        assert torch.equal(labels[pos], classes[matched[pos]])
        expect = torch.full_like(labels[~pos], K) if ign is None else torch.where(ign[~pos], -1, K)
        assert torch.equal(labels[~pos], expect)
        assert torch.equal(matched_boxes[pos], boxes[matched[pos]])
        assert (matched_boxes[~pos] == 0).all()
        assert per_gt.tolist() == [int((matched == i).sum()) for i in range(M)]
        assert per_gt[-2:].tolist() == [0, 0] and per_gt.sum() > 0

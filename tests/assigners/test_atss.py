"""ATSS: a hand-computed case, edge cases, and agreement with a per-GT loop reference."""

import math

import pytest
import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, pairwise_iou

from dense_assign.assigners import ATSSAssigner

from ..helpers import make_instances, make_priors

K = 2


def _pos(r):
    return {int(i): int(r.matched_idxs[i]) for i in torch.nonzero(r.labels != K).flatten()}


def test_hand_case_threshold_and_positives():
    # 32x32 image; level 0 stride 8 (points 4, 12, 20, 28), level 1 stride 16 (points 8, 24);
    # matching boxes of 2 * stride; k = 2 per level.
    priors = make_priors(image_size=(32, 32), strides=(8, 16))
    gt = make_instances([[1.0, 1.0, 13.0, 11.0]], [1], (32, 32))  # centre (7, 6), area 120
    r = ATSSAssigner(num_classes=K, topk=2, anchor_scale=2)(priors, gt)
    # candidates: level 0 -> (4,4) [idx 0], (12,4) [idx 1]; level 1 -> (8,8) [16], (24,8) [17]
    ious = [110 / 266, 90 / 286, 120 / 1024, 50 / 1094]
    mean = sum(ious) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in ious) / 3)  # unbiased
    assert r.stats["iou_threshold_mean"] == pytest.approx(mean + std, rel=1e-5)  # 0.3934
    # only idx 0 (IoU 0.4135) reaches it
    assert _pos(r) == {0: 0}
    assert r.labels[0].item() == 1


def _reference(priors, boxes, topk, match_boxes):
    """The official algorithm written per GT with Python loops (test reference only)."""
    R = len(priors)
    ious_all = pairwise_iou(Boxes(boxes), Boxes(match_boxes))  # (M, R)
    best = torch.full((R,), -1.0)
    idx = torch.full((R,), -1, dtype=torch.long)
    for g, box in enumerate(boxes):
        c = (box[:2] + box[2:]) / 2
        cands, start = [], 0
        for n in priors.level_sizes:
            d = ((priors.centers[start : start + n] - c) ** 2).sum(1).sqrt()
            cands += (d.argsort()[: min(topk * priors.num_anchors, n)] + start).tolist()
            start += n
        vals = ious_all[g, cands]
        thr = vals.mean() + vals.std()
        for j, v in zip(cands, vals):
            px, py = priors.centers[j]
            inside = min(px - box[0], py - box[1], box[2] - px, box[3] - py) > 0.01
            if v >= thr and inside and v > best[j]:
                best[j], idx[j] = v, g
    return idx


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("anchor_based", [False, True])
def test_matches_loop_reference(seed, anchor_based):
    if anchor_based:  # RetinaNet #A=9 + ATSS
        gen = DefaultAnchorGenerator(
            sizes=[[x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in (32, 64, 128)],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32],
            offset=0.5,
        )
        priors = make_priors(image_size=(160, 192), anchor_generator=gen)
        assigner = ATSSAssigner(num_classes=K)
        match = priors.boxes
    else:  # FCOS + ATSS: points matched through 8 * stride boxes
        priors = make_priors(image_size=(160, 192), strides=(8, 16, 32))
        assigner = ATSSAssigner(num_classes=K, anchor_scale=8)
        match = assigner.matching_boxes(priors)
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(15, 2, generator=g) * torch.tensor([170.0, 140.0])
    boxes = torch.cat([xy, xy + 3 + torch.rand(15, 2, generator=g) * 90], dim=1)
    gt = make_instances(boxes, torch.randint(0, K, (15,), generator=g), (160, 192))
    r = assigner(priors, gt)
    assert torch.equal(r.matched_idxs, _reference(priors, boxes, 9, match))
    assert len(_pos(r)) > 0


def test_k_larger_than_level():
    # level 1 (stride 16) on a 32x32 image has 4 points < k = 9: take them all, no crash
    priors = make_priors(image_size=(32, 32), strides=(8, 16))
    gt = make_instances([[2.0, 2.0, 30.0, 30.0]], [0], (32, 32))
    assigner = ATSSAssigner(num_classes=K, anchor_scale=2)
    assert assigner.candidates(priors, gt.gt_boxes.tensor).shape == (1, 9 + 4)
    r = assigner(priors, gt)
    assert r.labels.shape == (20,) and math.isfinite(r.stats["iou_threshold_mean"])


def test_tied_gts_go_to_the_first():
    priors = make_priors(image_size=(64, 64), strides=(8, 16))
    box = [10.0, 12.0, 40.0, 50.0]
    gt = make_instances([box, box], [0, 1], (64, 64))
    r = ATSSAssigner(num_classes=K, anchor_scale=4)(priors, gt)
    pos = _pos(r)
    assert pos and set(pos.values()) == {0}


def test_gt_much_smaller_than_stride():
    priors = make_priors(image_size=(64, 64), strides=(8, 16, 32))
    # 2x2 box between points: no candidate centre lies inside it -> no positive, no crash
    gt = make_instances([[5.0, 5.0, 7.0, 7.0], [20.0, 20.0, 60.0, 60.0]], [0, 1], (64, 64))
    r = ATSSAssigner(num_classes=K, anchor_scale=8)(priors, gt)
    assert set(_pos(r).values()) == {1}
    assert r.stats["gt_without_pos"] == 1


def test_center_on_box_edge_is_outside():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    # point (12, 12) lies exactly on the left/top edges of this box (margin must exceed 0.01)
    gt = make_instances([[12.0, 12.0, 30.0, 30.0]], [0], (32, 32))
    r = ATSSAssigner(num_classes=K, topk=9, anchor_scale=8)(priors, gt)
    assert 5 not in _pos(r)  # index of point (12, 12)
    assert 10 in _pos(r)  # (20, 20) is inside


def test_empty_gt_and_many_gt():
    priors = make_priors(image_size=(512, 640), strides=(8, 16, 32, 64, 128))
    empty = make_instances(torch.zeros(0, 4), torch.zeros(0), (512, 640))
    assert (ATSSAssigner(num_classes=K, anchor_scale=8)(priors, empty).labels == K).all()
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1000, 2, generator=g) * 480
    boxes = torch.cat([xy, xy + 4 + torch.rand(1000, 2, generator=g) * 30], dim=1)
    gt = make_instances(boxes, torch.randint(0, K, (1000,), generator=g), (512, 640))
    r = ATSSAssigner(num_classes=K, anchor_scale=8)(priors, gt)
    assert len(_pos(r)) > 500

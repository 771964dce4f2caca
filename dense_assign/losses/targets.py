"""Quality targets: FCOS centerness and the IoU of a decoded box with its GT."""

import torch
from torch import Tensor


def centerness_targets(points: Tensor, gt_boxes: Tensor) -> Tensor:
    """FCOS centerness (Eq. 3 of the FCOS paper) of points inside their GT boxes.

    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` for (P, 2) points and (P, 4) boxes.
    Call it on positives only: a point outside its box has no defined centerness.
    """
    l = points[:, 0] - gt_boxes[:, 0]
    t = points[:, 1] - gt_boxes[:, 1]
    r = gt_boxes[:, 2] - points[:, 0]
    b = gt_boxes[:, 3] - points[:, 1]
    lr = torch.stack((l, r), dim=1)
    tb = torch.stack((t, b), dim=1)
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values) * (
        tb.min(dim=1).values / tb.max(dim=1).values
    )
    return torch.sqrt(ratio.clamp(min=0))


def aligned_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of box i of ``boxes1`` with box i of ``boxes2`` ((P, 4) XYXY each) -> (P,).

    Differentiable in both arguments (IoU-aware RetinaNet lets the gradient reach the regression
    branch through this target, Sec. 3.2 of its paper).
    """
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
    return inter / (area1 + area2 - inter).clamp(min=eps)

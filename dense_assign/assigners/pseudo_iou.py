"""Pseudo-IoU label assignment.

Paper: "Pseudo-IoU: Improving Label Assignment in Anchor-Free Object Detection" (Li et al., CVPRW
2021), Algorithm 1. Start from the anchor-free baseline's positives (points inside a GT, FCOS scale
ranges, minimum-area GT on overlap); for each, build a *pseudo box* of the GT's width and height
centred at the point, and keep the point positive only when IoU(pseudo box, GT) is above a threshold
T (0.4, Table 1a). The rest become background (focal-loss negatives, not ignored).

With d = the point's distances (l, t, r, b) to the GT edges, the pseudo box overlaps the GT by
``min(l, w/2) + min(r, w/2)`` along x (likewise along y), so
``PIoU = I / (2 * area - I)`` in closed form, vectorized over all positives.

Choices (docs/methods.md, "Pseudo-IoU"):
- "above the threshold": the paper writes v >= T for positives; the official code relabels
  PIoU <= T as background, so a point exactly at T is background here, as in the code.
- The filter applies after the minimum-area tie-break: a point whose chosen GT fails is background,
  it is not handed to another GT (official code).

The paper's alternative metrics (Table 2) are options of the same assigner:
``metric="scaled_box"`` keeps points with |x - xc| < s*w/2 and |y - yc| < s*h/2 (s = threshold),
``metric="centerness"`` keeps points whose FCOS centerness is >= c (c = threshold).
"""

import torch

from ..box_ops import box_centers, centerness, ltrb
from ..registry import ASSIGNER_REGISTRY
from .inside_box import InsideBoxAssigner

METRICS = ("piou", "scaled_box", "centerness")
#: Pseudo-IoU threshold T (Table 1a: 0.4 is best on VOC 07+12).
PIOU_THRESHOLD = 0.4


def pseudo_iou(points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Pseudo-IoU of (P, 2) points with their (P, 4) GT boxes (points inside their boxes)."""
    w = gt_boxes[:, 2] - gt_boxes[:, 0]
    h = gt_boxes[:, 3] - gt_boxes[:, 1]
    l, t, r, b = ltrb(points, gt_boxes).unbind(dim=1)
    ix = torch.minimum(l, w / 2) + torch.minimum(r, w / 2)
    iy = torch.minimum(t, h / 2) + torch.minimum(b, h / 2)
    inter = ix.clamp(min=0) * iy.clamp(min=0)
    return inter / (2 * w * h - inter).clamp(min=1e-12)


@ASSIGNER_REGISTRY.register()
class PseudoIoUAssigner(InsideBoxAssigner):
    def __init__(
        self, *, num_classes: int, threshold: float = PIOU_THRESHOLD, metric: str = "piou", **kwargs
    ):
        """
        Args:
            threshold: T for "piou" (keep PIoU > T), s for "scaled_box", c for "centerness".
            metric: "piou" (Algorithm 1), "scaled_box" or "centerness" (Table 2).
        Other arguments: :class:`InsideBoxAssigner` (FCOS scale ranges on by default).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        if metric not in METRICS:
            raise ValueError(f"model.assigner.metric={metric!r}; allowed: {', '.join(METRICS)}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"model.assigner.threshold must be in [0, 1], got {threshold}")
        self.metric = metric
        self.threshold = float(threshold)

    def keep(self, points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """Which of the baseline's positives stay positive."""
        if self.metric == "piou":
            return pseudo_iou(points, gt_boxes) > self.threshold
        if self.metric == "centerness":
            return centerness(ltrb(points, gt_boxes)) >= self.threshold
        center = box_centers(gt_boxes)
        half = (gt_boxes[:, 2:] - gt_boxes[:, :2]) * (self.threshold / 2)
        return ((points - center).abs() < half).all(dim=1)

    @torch.no_grad()
    def assign(self, priors, gt_instances, predictions=None, image_size=None):
        base = super().assign(priors, gt_instances)
        pos = base.matched_idxs >= 0
        idx = pos.nonzero(as_tuple=True)[0]
        drop = idx[~self.keep(priors.centers[idx], base.matched_gt_boxes[idx])]
        matched = base.matched_idxs.clone()
        matched[drop] = -1
        result = self.result_from_matches(gt_instances, matched)
        result.stats["baseline_pos"] = pos.sum().float()
        return result

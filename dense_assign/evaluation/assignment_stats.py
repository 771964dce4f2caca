"""Statistics of a label assignment, as the papers report them.

For a batch (or a whole dataset, by accumulating :func:`assignment_counts`):
- positives per GT (mean, min) and the fraction of GTs with no positive at all;
- the share of positives on each pyramid level;
- the mean IoU of the positives' prior boxes with their GT (for a point model the prior box is the
  ``scale * stride`` square at the point, so the number compares runs of one prior layout only).
The detector puts them into detectron2's EventStorage as ``assign/*`` (metrics.json, TensorBoard).
"""

from typing import Dict, List

import torch
from detectron2.structures import Boxes, Instances

from ..structures import AssignResult, Priors


def assignment_counts(priors: Priors, result: AssignResult, gt: Instances, num_classes: int):
    """Per-image raw counts: (positives per GT (M,), positives per level (L,), sum of IoUs)."""
    pos = (result.labels >= 0) & (result.labels != num_classes) & (result.matched_idxs >= 0)
    idx = result.matched_idxs[pos]
    per_gt = torch.bincount(idx, minlength=len(gt)) if len(gt) else idx.new_zeros(0)
    per_level = torch.bincount(priors.levels[pos], minlength=priors.num_levels)
    iou_sum = 0.0
    if pos.any():
        a, b = priors.boxes[pos], result.matched_gt_boxes[pos]
        lt = torch.maximum(a[:, :2], b[:, :2])
        rb = torch.minimum(a[:, 2:], b[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        union = Boxes(a).area() + Boxes(b).area() - inter
        iou_sum = float((inter / union.clamp(min=1e-12)).sum())
    return per_gt, per_level, iou_sum


def assignment_statistics(
    priors: Priors, results: List[AssignResult], gts: List[Instances], num_classes: int
) -> Dict[str, float]:
    """The statistics of a batch; empty when the batch has no GT box."""
    per_gt, per_level, iou_sum = [], torch.zeros(priors.num_levels, dtype=torch.long), 0.0
    for result, gt in zip(results, gts):
        g, lvl, s = assignment_counts(priors, result, gt, num_classes)
        per_gt.append(g.cpu())
        per_level += lvl.cpu()
        iou_sum += s
    per_gt = torch.cat(per_gt) if per_gt else torch.zeros(0, dtype=torch.long)
    if len(per_gt) == 0:
        return {}
    num_pos = int(per_level.sum())
    stats = {
        "pos_per_gt_mean": float(per_gt.float().mean()),
        "pos_per_gt_min": float(per_gt.min()),
        "gt_without_pos_frac": float((per_gt == 0).float().mean()),
        "pos_prior_iou_mean": iou_sum / max(num_pos, 1),
    }
    for level, count in enumerate(per_level.tolist()):
        stats[f"pos_frac_level{level}"] = count / max(num_pos, 1)
    return stats

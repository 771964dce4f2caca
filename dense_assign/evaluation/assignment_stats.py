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
from detectron2.structures import Instances

from ..box_ops import pair_iou
from ..structures import AssignResult, Priors, positives_per_gt


def assignment_counts(priors: Priors, result: AssignResult, gt: Instances, num_classes: int):
    """Per-image raw counts, on the priors' device: (positives per GT (M,), positives per level
    (L,), sum of IoUs (0-dim)). Computed over all priors with fixed shapes (no boolean indexing,
    no ``bincount``), so that no value is read on the host: on a GPU that would synchronize."""
    pos = (result.labels >= 0) & (result.labels != num_classes) & (result.matched_idxs >= 0)
    per_gt = positives_per_gt(result.matched_idxs, pos, len(gt))
    ones = pos.long()
    per_level = ones.new_zeros(priors.num_levels).scatter_add_(0, priors.levels.long(), ones)
    iou = pair_iou(priors.boxes, result.matched_gt_boxes.to(priors.boxes.dtype))
    iou_sum = torch.where(pos, iou, torch.zeros_like(iou)).sum()
    return per_gt, per_level, iou_sum


def assignment_statistics(
    priors: Priors, results: List[AssignResult], gts: List[Instances], num_classes: int
) -> Dict[str, torch.Tensor]:
    """The statistics of a batch, as 0-dim tensors on the priors' device (read them with
    ``float``); empty when the batch has no GT box."""
    if sum(len(gt) for gt in gts) == 0:
        return {}
    counts = [assignment_counts(priors, r, gt, num_classes) for r, gt in zip(results, gts)]
    per_gt = torch.cat([c[0] for c in counts]).float()
    per_level = torch.stack([c[1] for c in counts]).sum(dim=0).float()
    num_pos = per_level.sum().clamp(min=1)
    stats = {
        "pos_per_gt_mean": per_gt.mean(),
        "pos_per_gt_min": per_gt.min(),
        "gt_without_pos_frac": (per_gt == 0).float().mean(),
        "pos_prior_iou_mean": torch.stack([c[2] for c in counts]).sum() / num_pos,
    }
    for level in range(priors.num_levels):
        stats[f"pos_frac_level{level}"] = per_level[level] / num_pos
    return stats

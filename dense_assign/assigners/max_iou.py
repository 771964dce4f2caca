"""Max-IoU label assignment of RetinaNet.

Paper: "Focal Loss for Dense Object Detection" (Lin et al., ICCV 2017), Sec. 4: an anchor is
foreground when its best IoU with a GT is >= 0.5, background below 0.4, ignored in between; with
low-quality matches, the anchors with the highest IoU for a GT become foreground too (as
detectron2's ``Matcher(allow_low_quality_matches=True)``).

Differences from detectron2's Matcher, both for crowded or degenerate input only:
- the (M, R) IoU matrix is never materialized whole; it is computed on chunks of GTs;
- a GT that overlaps no anchor at all (max IoU 0, e.g. a zero-area box) gets no low-quality match;
  detectron2 would turn every anchor with IoU 0 to it into a foreground.
"""
from typing import Sequence

import torch
from detectron2.structures import Boxes, pairwise_iou

from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner, best_gt_per_prior


@ASSIGNER_REGISTRY.register()
class MaxIoUAssigner(BaseAssigner):
    def __init__(
        self,
        *,
        num_classes: int,
        thresholds: Sequence[float] = (0.4, 0.5),
        allow_low_quality_matches: bool = True,
        **kwargs,
    ):
        """
        Args:
            thresholds: (bg_below, fg_from): IoU < bg_below is background, IoU >= fg_from is
                foreground, in between is ignored (RetinaNet: 0.4, 0.5).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        thresholds = [float(t) for t in thresholds]
        if len(thresholds) != 2 or not (0.0 <= thresholds[0] <= thresholds[1] <= 1.0):
            raise ValueError(
                f"thresholds must be (bg_below, fg_from) with 0 <= bg_below <= fg_from <= 1, "
                f"got {thresholds}"
            )
        self.thresholds = thresholds
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def candidate_ious(self, priors: Priors, gt_boxes, start: int, end: int) -> torch.Tensor:
        """(end - start, R) IoU of GTs with the prior (anchor) boxes."""
        return pairwise_iou(Boxes(gt_boxes[start:end]), Boxes(priors.boxes))

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        chunks = list(self.gt_chunks(len(gt_boxes), len(priors)))
        if len(chunks) == 1:  # small enough: compute the IoU matrix once
            full = self.candidate_ious(priors, gt_boxes, 0, len(gt_boxes))
            ious_of = lambda s, e: full  # noqa: E731
        else:
            ious_of = lambda s, e: self.candidate_ious(priors, gt_boxes, s, e)  # noqa: E731
        best_iou, best_gt = best_gt_per_prior(
            ious_of,
            chunks,
            len(priors),
            gt_boxes.device,
        )
        best_gt = best_gt.clamp(min=0)  # every prior has a best GT (IoU may be 0)
        bg_below, fg_from = self.thresholds
        fg = best_iou >= fg_from
        ignore = (best_iou >= bg_below) & ~fg
        if self.allow_low_quality_matches:
            # a prior whose IoU with some GT equals that GT's highest IoU becomes foreground,
            # matched (as in detectron2) to its own best GT
            gt_max = torch.cat(
                [ious_of(s, e).max(dim=1).values for s, e in chunks]
            )
            for s, e in chunks:
                ious = ious_of(s, e)
                hit = (ious == gt_max[s:e, None]) & (gt_max[s:e, None] > 0)
                fg |= hit.any(dim=0)
        matched = torch.where(fg, best_gt, torch.full_like(best_gt, -1))
        result = self.result_from_matches(gt_instances, matched, ignore=ignore & ~fg)
        # ignored anchors keep their best GT index (detectron2 convention), for analysis tools
        result.matched_idxs = torch.where(ignore & ~fg, best_gt, matched)
        return result

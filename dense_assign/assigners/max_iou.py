"""Max-IoU label assignment of RetinaNet.

Paper: "Focal Loss for Dense Object Detection" (Lin et al., ICCV 2017), Sec. 4: an anchor is
foreground when its best IoU with a GT is >= 0.5, background below 0.4, ignored in between; with
low-quality matches, the anchors with the highest IoU for a GT become foreground too (as
detectron2's ``Matcher(allow_low_quality_matches=True)``).

Candidates (:mod:`~dense_assign.assigners.candidates`): per GT, level and anchor shape, the cells
whose anchor can reach IoU >= tau_g with the GT, tau_g = min(bg_below, the GT's IoU with the anchors
of its centre's cells) (tau_g = bg_below without low-quality matches): no other pair changes a label,
a matched index or a low-quality match. An anchor matched as low-quality below bg_below gets its
best GT over all GTs again (few anchors). The tests compare the result with detectron2's ``Matcher``
on the dense IoU matrix.

Which GT a low-quality match trains for: ``low_quality_gt="best"`` (default) keeps the anchor's
own best GT, as detectron2's and maskrcnn-benchmark's ``Matcher`` (so a small GT whose best anchor
has a higher IoU with a larger neighbour gets no anchor); ``"claimant"`` gives the anchor to the GT
it is a highest-IoU anchor of (the highest such GT index), as mmdetection's ``MaxIoUAssigner``,
whose loop over the GTs lets each overwrite the anchor, fixed foregrounds of other GTs included.

Differences from detectron2's Matcher, both for crowded or degenerate input only:
- the (M, R) IoU matrix is never materialized whole;
- a GT that overlaps no anchor at all (max IoU 0, e.g. a zero-area box) gets no low-quality match;
  detectron2 would turn every anchor with IoU 0 to it into a foreground.
"""

import math
from typing import Sequence

import torch
from detectron2.structures import Boxes, pairwise_iou

from ..box_ops import box_centers, pair_iou
from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner
from .candidates import BestPerPrior, PriorGrid, Windows

#: Values of ``low_quality_gt`` (module doc).
LOW_QUALITY_GT = ("best", "claimant")


@ASSIGNER_REGISTRY.register()
class MaxIoUAssigner(BaseAssigner):
    def __init__(
        self,
        *,
        num_classes: int,
        thresholds: Sequence[float] = (0.4, 0.5),
        allow_low_quality_matches: bool = True,
        low_quality_gt: str = "best",
        **kwargs,
    ):
        """
        Args:
            thresholds: (bg_below, fg_from): IoU < bg_below is background, IoU >= fg_from is
                foreground, in between is ignored (RetinaNet: 0.4, 0.5).
            low_quality_gt: the GT of a low-quality match: "best" (the anchor's best GT,
                detectron2) or "claimant" (the GT it is a highest-IoU anchor of, mmdetection);
                see the module doc.
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
        if low_quality_gt not in LOW_QUALITY_GT:
            raise ValueError(
                f"model.assigner.low_quality_gt={low_quality_gt!r}; allowed: "
                f"{', '.join(LOW_QUALITY_GT)}"
            )
        self.low_quality_gt = low_quality_gt

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        num_gt, R = len(gt_boxes), len(priors)
        bg_below = self.thresholds[0]

        def windows(grid):
            # Only pairs with IoU >= tau_g can change the result: below bg_below an anchor is
            # background whatever its best GT, and a low-quality match has the GT's highest IoU,
            # which is at least that GT's IoU with the anchors of its centre's cells.
            tau = gt_boxes.new_full((num_gt,), bg_below)
            if self.allow_low_quality_matches:
                tau = torch.minimum(tau, self._iou_lower_bound(grid, priors, gt_boxes))
            return self.overlap_windows(grid, gt_boxes, tau)

        best = BestPerPrior(R, gt_boxes.device, gt_boxes.dtype)
        low_quality = torch.zeros(R, dtype=torch.bool, device=gt_boxes.device)
        claimant = torch.full((R,), -1, dtype=torch.long, device=gt_boxes.device)
        for gt_idx, prior_idx in self.window_pairs(priors, num_gt, windows):
            ious = pair_iou(
                gt_boxes.index_select(0, gt_idx), priors.boxes.index_select(0, prior_idx)
            )
            keep = (ious > 0).nonzero().squeeze(1)  # the dense IoU is 0 elsewhere
            gt_idx, prior_idx, ious = (x.index_select(0, keep) for x in (gt_idx, prior_idx, ious))
            best.update(prior_idx, gt_idx, ious)
            if self.allow_low_quality_matches:
                # a chunk holds all the pairs of its GTs: their highest IoU is final here
                gt_max = ious.new_zeros(num_gt).scatter_reduce_(0, gt_idx, ious, reduce="amax")
                hit = (ious == gt_max.index_select(0, gt_idx)).nonzero().squeeze(1)
                low_quality[prior_idx.index_select(0, hit)] = True
                claimant.scatter_reduce_(
                    0, prior_idx.index_select(0, hit), gt_idx.index_select(0, hit), reduce="amax"
                )
        best_iou, best_gt = best.result()
        # an anchor without pairs: IoU 0 with every GT, of which a dense max picks the first
        best_iou = torch.where(best_gt >= 0, best_iou, torch.zeros_like(best_iou))
        best_gt = best_gt.clamp(min=0)
        # a low-quality match below bg_below may have its best GT among the pruned pairs: redo
        # those anchors against every GT
        redo = (low_quality & (best_iou < bg_below)).nonzero().squeeze(1)
        if len(redo):
            step = max(1, self.chunk_pairs // max(num_gt, 1))
            for s in range(0, len(redo), step):
                idx = redo[s : s + step]
                value, arg = pairwise_iou(Boxes(gt_boxes), Boxes(priors.boxes[idx])).max(dim=0)
                best_iou[idx], best_gt[idx] = value, arg
        if self.low_quality_gt == "claimant":
            best_gt = torch.where(claimant >= 0, claimant, best_gt)
        return self._result(gt_instances, best_iou, best_gt, low_quality)

    def overlap_windows(self, grid: PriorGrid, gt_boxes, tau=None) -> Windows:
        """Per GT, level and anchor shape, the cells whose anchor box can have an IoU >= tau_g
        (> 0 where tau_g = 0) with the GT.

        IoU >= tau needs an intersection >= tau max(area_gt, area_anchor), hence an overlap
        along x of at least ``need_x = tau max(areas) / min(h_gt, h_anchor)``, so the anchor's
        centre lies within its extent minus ``need_x`` of the box (likewise along y)."""
        shapes = grid.anchor_shapes()
        ext = shapes["extents"]  # (L, A, 4): left, top, right, bottom of the centre
        boxes = gt_boxes.double()
        lo = boxes[:, None, None, :2] - ext[None, :, :, 2:]  # (M, L, A, 2)
        hi = boxes[:, None, None, 2:] + ext[None, :, :, :2]
        w = (boxes[:, 2] - boxes[:, 0])[:, None, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None, None]
        empty = (w <= 0) | (h <= 0)  # IoU 0 with everything
        if tau is not None:
            t = (tau.double() * (1 - 1e-4)).clamp(min=0)[:, None, None]
            area = torch.maximum(w * h, shapes["area_min"][None])
            w_min = torch.minimum(w, shapes["w_max"][None])
            h_min = torch.minimum(h, shapes["h_max"][None])
            need = torch.stack((t * area / h_min, t * area / w_min), dim=-1)
            need = torch.where((t > 0)[..., None] & ~empty[..., None], need, torch.zeros_like(need))
            lo = lo + need
            hi = hi - need
            size = torch.stack((w_min, h_min), dim=-1)
            empty = empty | (need > size * (1 + 1e-5) + 1e-3).any(dim=-1)
        hi = torch.where(empty[..., None], torch.full_like(hi, -math.inf), hi)
        return grid.windows(lo, hi)

    def _iou_lower_bound(self, grid: PriorGrid, priors: Priors, gt_boxes):
        """(M,) a lower bound of each GT's highest IoU: its IoU with the anchors of the cell
        nearest its centre on every level."""
        idx = grid.nearest_cells(box_centers(gt_boxes)).flatten(1)  # (M, L A)
        m, n = idx.shape
        boxes = gt_boxes[:, None].expand(m, n, 4).reshape(-1, 4)
        return pair_iou(boxes, priors.boxes[idx.reshape(-1)]).view(m, n).amax(dim=1)

    def _result(self, gt_instances, best_iou, best_gt, low_quality):
        bg_below, fg_from = self.thresholds
        fg = best_iou >= fg_from
        ignore = (best_iou >= bg_below) & ~fg
        if self.allow_low_quality_matches:
            fg |= low_quality
        matched = torch.where(fg, best_gt, torch.full_like(best_gt, -1))
        result = self.result_from_matches(gt_instances, matched, ignore=ignore & ~fg)
        # ignored anchors keep their best GT index (detectron2 convention), for analysis tools
        result.matched_idxs = torch.where(ignore & ~fg, best_gt, matched)
        return result

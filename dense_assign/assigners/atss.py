"""ATSS: Adaptive Training Sample Selection.

Paper: "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection" (Zhang et al., CVPR 2020), Algorithm 1. For every GT: on each pyramid level take the k
priors whose centres are closest (L2) to the GT centre; the IoU threshold is the mean plus the
standard deviation of those candidates' IoUs (all levels together); a candidate is positive when its
IoU reaches the threshold and its centre lies inside the GT. A prior claimed by several GTs goes to
the one with the highest IoU. No scale ranges, no ignored priors.

Details of the official code (docs/methods.md, "ATSS"), kept here:
- k = min(topk * A, priors on the level), A = priors per location (9 candidates a level for #A=1);
- IoU of the candidates' *anchor boxes* with the GT: the priors' own boxes for an anchor-based model,
  or, for a point model (``anchor_scale`` set), squares of ``anchor_scale * stride`` at the points
  (8 * stride, as RetinaNet #A=1), so FCOS + ATSS matches as the anchor-based detector does;
- unbiased (Bessel) standard deviation; the "inside" test is min(l, t, r, b) > 0.01.

Differences from the official code, none affecting a normal image: an image without GT is all
background (the official code crashes); a GT whose candidates number 1 gets std 0 instead of NaN;
among priors at the same distance the lowest indices are candidates (the official ``topk`` leaves
it to the implementation); GTs are processed in chunks to bound memory.

The k nearest priors of a level are searched in a window of cells around the GT centre, checked
per GT to hold them and every prior tied with the k-th (:func:`~.candidates.nearest_candidates`;
else all that level's priors are searched for the GT).
"""

from typing import Optional

import torch

from ..box_ops import box_centers, inside, pair_iou
from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner
from .candidates import BestPerPrior, gt_ranges, k_smallest, nearest_candidates, window_side

#: Candidates per level (ATSS paper Sec. 3.2 / slides: k = 9, robust over 3..19).
ATSS_TOPK = 9
#: Minimum distance of a positive's centre inside its GT (official ``loss.py``: 0.01).
INSIDE_EPS = 0.01


@ASSIGNER_REGISTRY.register()
class ATSSAssigner(BaseAssigner):
    def __init__(
        self,
        *,
        num_classes: int,
        topk: int = ATSS_TOPK,
        anchor_scale: Optional[float] = None,
        **kwargs,
    ):
        """
        Args:
            topk: k, candidates per level (per anchor shape).
            anchor_scale: None to match with the priors' own boxes (anchor-based model); a number
                to match with squares of ``anchor_scale * stride`` at the prior centres (point
                model: 8, Sec. 3.2 of the paper).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        if topk < 1:
            raise ValueError(f"model.assigner.topk must be >= 1, got {topk}")
        if anchor_scale is not None and anchor_scale <= 0:
            raise ValueError(f"model.assigner.anchor_scale must be > 0 or None, got {anchor_scale}")
        self.topk = int(topk)
        self.anchor_scale = anchor_scale

    def matching_boxes(self, priors: Priors) -> torch.Tensor:
        if self.anchor_scale is None:
            return priors.boxes
        half = priors.strides[:, None] * (self.anchor_scale / 2)
        return torch.cat([priors.centers - half, priors.centers + half], dim=1)

    # ------------------------------------------------------------------ candidates
    def candidates(self, priors: Priors, gt_boxes: torch.Tensor) -> torch.Tensor:
        """(m, C) indices of each GT's candidate priors: the k closest (L2 of the centres) on
        every level, ascending per level; among equally distant priors the lowest indices.

        Searched in a window of cells around the GT centre, checked to hold the k nearest
        (:func:`~.candidates.nearest_candidates`), else among all the level's priors."""
        grid = self.prior_grid(priors)
        gt_centers = box_centers(gt_boxes)
        starts = priors.level_starts
        ks = [min(self.topk * priors.num_anchors, n) for n in priors.level_sizes]

        def whole_level_fn(level, rows):
            start, size, k = starts[level], priors.level_sizes[level], ks[level]
            centers = priors.centers[start : start + size]
            step = max(1, self.chunk_pairs // max(size, 1))
            parts = [
                k_smallest(_squared_distance(centers[None], gt_centers[rows[i : i + step]]), k)
                for i in range(0, len(rows), step)
            ]
            return torch.cat(parts) + start if parts else rows.new_zeros((0, k))

        def window_fn(idx):
            return _squared_distance(priors.centers[idx], gt_centers)

        picked = nearest_candidates(grid, gt_centers, ks, window_fn, whole_level_fn)
        if not picked:
            return torch.zeros((len(gt_boxes), 0), dtype=torch.long, device=gt_boxes.device)
        return torch.cat(picked, dim=1)

    # ------------------------------------------------------------------ selection
    def select(self, priors: Priors, match_boxes: torch.Tensor, boxes: torch.Tensor):
        """The candidates of (m, 4) GT ``boxes`` and which are positive: ((m, C) prior indices,
        (m, C) IoUs, (m, C) positive mask, (m,) IoU thresholds mean + std)."""
        cand = self.candidates(priors, boxes)  # (m, C)
        m, C = cand.shape
        ious = pair_iou(
            match_boxes[cand.reshape(-1)], boxes[:, None].expand(m, C, 4).reshape(-1, 4)
        ).view(m, C)
        std = ious.std(dim=1) if C > 1 else torch.zeros_like(ious[:, 0])
        thresh = ious.mean(dim=1) + torch.nan_to_num(std, nan=0.0)
        in_box = inside(priors.centers[cand], boxes[:, None], INSIDE_EPS)
        return cand, ious, (ious >= thresh[:, None]) & in_box, thresh

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        match_boxes = self.matching_boxes(priors)
        R = len(priors)
        # chunks of GTs by the pairs of their windows (or of all the priors, without a grid)
        grid = self.prior_grid(priors)
        cells = window_side(self.topk) ** 2 * priors.num_anchors
        per_gt = sum(n if grid is None else min(n, 2 * cells) for n in priors.level_sizes)
        best = BestPerPrior(R, gt_boxes.device, match_boxes.dtype)
        thresholds = []
        for start, end in gt_ranges(len(gt_boxes), per_gt, self.chunk_pairs):
            cand, ious, positive, thresh = self.select(priors, match_boxes, gt_boxes[start:end])
            thresholds.append(thresh)
            gt_idx, col = positive.nonzero(as_tuple=True)
            best.update(cand[gt_idx, col], gt_idx + start, ious[gt_idx, col])  # highest IoU wins
        result = self.result_from_matches(gt_instances, best.result()[1])
        result.stats["iou_threshold_mean"] = torch.cat(thresholds).mean()
        return result


def _squared_distance(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """(m, n) squared L2 distance of (1 or m, n, 2) ``points`` to the (m, 2) ``centers``, one
    formula for the windows and the whole-level search (so both see the very same values)."""
    dx = points[..., 0] - centers[:, None, 0]
    dy = points[..., 1] - centers[:, None, 1]
    return dx * dx + dy * dy

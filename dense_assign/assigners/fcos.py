"""FCOS label assignment.

Paper: "FCOS: Fully Convolutional One-Stage Object Detection" (Tian et al., ICCV 2019) and its
improved recipe (center sampling, arXiv 2006.09214). A point is a candidate of a GT when it lies
inside the GT box, inside the GT's central region of ``radius * stride`` (center sampling) and when
``max(l, t, r, b)`` falls in its level's scale range; a point claimed by several GTs takes the one
with the smallest area.

Defaults follow the official "imprv" code (REFERENCE.md section 1.1): radius 1.5, ranges
(-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8) with inclusive bounds.
detectron2's FCOS uses the same ranges with strict bounds (``inclusive_ranges=False``).

Candidates: per GT and level, the window of cells inside the box, the center-sampling square and the
band within ``hi`` of every edge (:meth:`FCOSAssigner.candidate_windows`), the rule evaluated on
those pairs only; ``dense=True``: on (GT chunk, R) masks (:meth:`FCOSAssigner.candidate_mask`, the
reference; same result).
"""

import math
from typing import Optional, Sequence

import torch

from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner, best_gt_per_prior, per_level_values, point_box_deltas
from .candidates import BestPerPrior, PriorGrid, Windows, pair_deltas, pairs_in_chunks

#: Official FCOS object-size ranges per level P3-P7 (FCOS paper Sec. 3.2; INF = 1e8 in the code).
FCOS_SCALE_RANGES = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, 1e8))


@ASSIGNER_REGISTRY.register()
class FCOSAssigner(BaseAssigner):
    """Inside-box + center sampling + per-level scale ranges, minimum-area tie-break."""

    def __init__(
        self,
        *,
        num_classes: int,
        center_sampling_radius: Optional[float] = 1.5,
        scale_ranges: Optional[Sequence[Sequence[float]]] = FCOS_SCALE_RANGES,
        inclusive_ranges: bool = True,
        **kwargs,
    ):
        """
        Args:
            center_sampling_radius: a candidate's centre must be within ``radius * stride`` of the
                GT centre (per axis, strictly). None or 0 disables center sampling.
            scale_ranges: per level (lo, hi) bounds on max(l, t, r, b) in pixels; None = no
                ranges (every level may take every GT).
            inclusive_ranges: lo <= m <= hi (official FCOS) or lo < m < hi (detectron2).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        if center_sampling_radius is not None and center_sampling_radius < 0:
            raise ValueError(
                f"center_sampling_radius must be >= 0 or None, got {center_sampling_radius}"
            )
        self.center_sampling_radius = center_sampling_radius or None
        if scale_ranges is not None:
            scale_ranges = [tuple(float(v) for v in r) for r in scale_ranges]
            for r in scale_ranges:
                if len(r) != 2 or r[0] > r[1]:
                    raise ValueError(f"scale_ranges must be (lo, hi) pairs with lo <= hi, got {r}")
        self.scale_ranges = scale_ranges
        self.inclusive_ranges = bool(inclusive_ranges)

    # ------------------------------------------------------------------------- candidates
    def candidate_mask(self, priors: Priors, gt_boxes, start: int, end: int) -> torch.Tensor:
        """(end - start, R) bool: which (GT, prior) pairs may be matched under the FCOS rules."""
        boxes = gt_boxes[start:end]
        ltrb = point_box_deltas(priors.centers, boxes)  # (m, R, 4)
        mask = ltrb.min(dim=2).values > 0
        if self.center_sampling_radius is not None:
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            dist = (priors.centers[None] - centers[:, None]).abs().max(dim=2).values
            mask &= dist < self.center_sampling_radius * priors.strides[None]
        if self.scale_ranges is not None:
            lo = per_level_values(priors, [r[0] for r in self.scale_ranges], float("inf"))
            hi = per_level_values(priors, [r[1] for r in self.scale_ranges], float("-inf"))
            size = ltrb.max(dim=2).values
            if self.inclusive_ranges:
                mask &= (size >= lo[None]) & (size <= hi[None])
            else:
                mask &= (size > lo[None]) & (size < hi[None])
        return mask

    def candidate_windows(self, grid: PriorGrid, gt_boxes: torch.Tensor) -> Windows:
        """Per GT and level, the cells whose centre can pass :meth:`candidate_mask`: inside the
        box, within ``radius * stride`` of its centre, and within ``hi`` of every edge
        (max(l, t, r, b) <= hi); none on a level whose ``lo`` exceeds the box's larger side."""
        L = grid.num_levels
        boxes = gt_boxes.double()
        lo = boxes[:, None, :2].expand(-1, L, -1)
        hi = boxes[:, None, 2:].expand(-1, L, -1)
        strides = grid.strides_t[None, :, None]
        if self.center_sampling_radius is not None:
            centers = ((gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2).double()[:, None]
            radius = self.center_sampling_radius * strides
            lo = torch.maximum(lo, centers - radius)
            hi = torch.minimum(hi, centers + radius)
        if self.scale_ranges is not None:
            ranges = [
                self.scale_ranges[i] if i < len(self.scale_ranges) else None for i in range(L)
            ]
            top = torch.tensor(
                [r[1] if r is not None else -math.inf for r in ranges],
                dtype=torch.float64,
                device=boxes.device,
            )[None, :, None]
            bottom = torch.tensor(
                [r[0] if r is not None else math.inf for r in ranges],
                dtype=torch.float64,
                device=boxes.device,
            )
            lo = torch.maximum(lo, boxes[:, None, 2:] - top)  # r, b <= hi
            hi = torch.minimum(hi, boxes[:, None, :2] + top)  # l, t <= hi
            # inside the box max(l, t, r, b) <= max(w, h) (also after float rounding)
            wh = (gt_boxes[:, 2:] - gt_boxes[:, :2]).amax(dim=1).double()
            none = wh[:, None] < bottom[None]
            hi = torch.where(none[..., None], torch.full_like(hi, -math.inf), hi)
        return grid.windows(lo, hi)

    def candidate_pairs(self, priors: Priors, gt_boxes, gt_idx, prior_idx) -> torch.Tensor:
        """(P,) bool: :meth:`candidate_mask` evaluated on the given pairs only."""
        boxes = gt_boxes.index_select(0, gt_idx)
        points = priors.centers.index_select(0, prior_idx)
        ltrb = pair_deltas(points, boxes)
        mask = ltrb.min(dim=1).values > 0
        if self.center_sampling_radius is not None:
            centers = ((gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2)[gt_idx]
            dist = (points - centers).abs().max(dim=1).values
            mask &= dist < self.center_sampling_radius * priors.strides[prior_idx]
        if self.scale_ranges is not None:
            # the per-level bounds of per_level_values, gathered for the pairs only
            L = priors.num_levels
            n = len(self.scale_ranges)
            table = torch.tensor(
                [
                    [float(self.scale_ranges[i][0]) if i < n else float("inf") for i in range(L)],
                    [float(self.scale_ranges[i][1]) if i < n else float("-inf") for i in range(L)],
                ],
                dtype=priors.centers.dtype,
                device=priors.centers.device,
            )
            lo, hi = table[:, priors.levels.index_select(0, prior_idx)]
            size = ltrb.max(dim=1).values
            if self.inclusive_ranges:
                mask &= (size >= lo) & (size <= hi)
            else:
                mask &= (size > lo) & (size < hi)
        return mask

    # ------------------------------------------------------------------------- selection
    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        areas = gt_instances.gt_boxes.area()
        grid = self.prior_grid(priors)
        if grid is None:
            return self.result_from_matches(
                gt_instances, self._match_dense(priors, gt_boxes, areas)
            )
        best = BestPerPrior(len(priors), gt_boxes.device, areas.dtype)
        windows = self.candidate_windows(grid, gt_boxes)
        for gt_idx, prior_idx in pairs_in_chunks(windows, self.chunk_pairs):
            keep = self.candidate_pairs(priors, gt_boxes, gt_idx, prior_idx).nonzero().squeeze(1)
            gt_idx, prior_idx = gt_idx.index_select(0, keep), prior_idx.index_select(0, keep)
            best.update(prior_idx, gt_idx, -areas.index_select(0, gt_idx))  # minimum area wins
        return self.result_from_matches(gt_instances, best.result()[1])

    def _match_dense(self, priors: Priors, gt_boxes, areas) -> torch.Tensor:
        """Per prior the matched GT (-1: none) from dense (GT chunk, R) masks."""

        def score(start, end):
            mask = self.candidate_mask(priors, gt_boxes, start, end)
            # larger score = smaller area: the minimum-area GT wins a contested prior
            return torch.where(mask, -areas[start:end, None], areas.new_tensor(-float("inf")))

        _, matched = best_gt_per_prior(
            score, self.gt_chunks(len(gt_boxes), len(priors)), len(priors), gt_boxes.device
        )
        return matched

"""FCOS label assignment.

Paper: "FCOS: Fully Convolutional One-Stage Object Detection" (Tian et al., ICCV 2019) and its
improved recipe (center sampling, arXiv 2006.09214). A point is a candidate of a GT when it lies
inside the GT box, inside the GT's central region of ``radius * stride`` (center sampling) and when
``max(l, t, r, b)`` falls in its level's scale range; a point claimed by several GTs takes the one
with the smallest area.

Defaults follow the official "imprv" code (docs/methods.md, "FCOS"): radius 1.5, ranges
(-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8) with inclusive bounds.
detectron2's FCOS uses the same ranges with strict bounds (``inclusive_ranges=False``).

Candidates: per GT and level, the window of cells inside the box, the center-sampling square and the
band within ``hi`` of every edge (:meth:`FCOSAssigner.candidate_windows`), the rule
(:meth:`FCOSAssigner.is_candidate`) evaluated on those pairs only.
"""

import math
from typing import Optional, Sequence

import torch

from ..box_ops import box_centers, level_table, ltrb
from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner
from .candidates import BestPerPrior, PriorGrid, Windows

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
    def range_table(self, num_levels: int, dtype, device):
        """(2, L) the per-level (lo, hi) bounds on max(l, t, r, b); (inf, -inf) on a level the
        ranges do not cover (no candidate there)."""
        ranges = self.scale_ranges
        lo = level_table(
            None if ranges is None else [r[0] for r in ranges], num_levels, math.inf, dtype, device
        )
        hi = level_table(
            None if ranges is None else [r[1] for r in ranges], num_levels, -math.inf, dtype, device
        )
        return torch.stack((lo, hi))

    def candidate_windows(self, grid: PriorGrid, gt_boxes: torch.Tensor) -> Windows:
        """Per GT and level, the cells whose centre can pass :meth:`is_candidate`: inside the
        box, within ``radius * stride`` of its centre, and within ``hi`` of every edge
        (max(l, t, r, b) <= hi); none on a level whose ``lo`` exceeds the box's larger side."""
        L = grid.num_levels
        boxes = gt_boxes.double()
        lo = boxes[:, None, :2].expand(-1, L, -1)
        hi = boxes[:, None, 2:].expand(-1, L, -1)
        strides = grid.strides_t[None, :, None]
        if self.center_sampling_radius is not None:
            centers = box_centers(gt_boxes).double()[:, None]
            radius = self.center_sampling_radius * strides
            lo = torch.maximum(lo, centers - radius)
            hi = torch.minimum(hi, centers + radius)
        if self.scale_ranges is not None:
            bottom, top = self.range_table(L, torch.float64, boxes.device)
            top = top[None, :, None]
            lo = torch.maximum(lo, boxes[:, None, 2:] - top)  # r, b <= hi
            hi = torch.minimum(hi, boxes[:, None, :2] + top)  # l, t <= hi
            # inside the box max(l, t, r, b) <= max(w, h) (also after float rounding)
            wh = (gt_boxes[:, 2:] - gt_boxes[:, :2]).amax(dim=1).double()
            none = wh[:, None] < bottom[None]
            hi = torch.where(none[..., None], torch.full_like(hi, -math.inf), hi)
        return grid.windows(lo, hi)

    def is_candidate(self, priors: Priors, gt_boxes, gt_idx, prior_idx) -> torch.Tensor:
        """(P,) bool: whether each (GT, prior) pair passes the FCOS rules."""
        boxes = gt_boxes.index_select(0, gt_idx)
        points = priors.centers.index_select(0, prior_idx)
        distances = ltrb(points, boxes)
        mask = distances.min(dim=1).values > 0
        if self.center_sampling_radius is not None:
            dist = (points - box_centers(boxes)).abs().max(dim=1).values
            mask &= dist < self.center_sampling_radius * priors.strides.index_select(0, prior_idx)
        if self.scale_ranges is not None:
            table = self.range_table(priors.num_levels, priors.centers.dtype, priors.centers.device)
            lo, hi = table[:, priors.levels.index_select(0, prior_idx)]
            size = distances.max(dim=1).values
            if self.inclusive_ranges:
                mask &= (size >= lo) & (size <= hi)
            else:
                mask &= (size > lo) & (size < hi)
        return mask

    # ------------------------------------------------------------------------- selection
    def match(self, priors: Priors, gt_boxes: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
        """(R,) the GT each prior is matched to (-1: none): among the GTs whose rules it passes,
        the one of minimum area (ties: lowest index)."""
        best = BestPerPrior(len(priors), gt_boxes.device, areas.dtype)
        pairs = self.window_pairs(
            priors, len(gt_boxes), lambda grid: self.candidate_windows(grid, gt_boxes)
        )
        for gt_idx, prior_idx in pairs:
            keep = self.is_candidate(priors, gt_boxes, gt_idx, prior_idx).nonzero().squeeze(1)
            gt_idx, prior_idx = gt_idx.index_select(0, keep), prior_idx.index_select(0, keep)
            best.update(prior_idx, gt_idx, -areas.index_select(0, gt_idx))  # minimum area wins
        return best.result()[1]

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        matched = self.match(priors, gt_instances.gt_boxes.tensor, gt_instances.gt_boxes.area())
        return self.result_from_matches(gt_instances, matched)

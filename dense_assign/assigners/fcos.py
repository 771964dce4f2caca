"""FCOS label assignment.

Paper: "FCOS: Fully Convolutional One-Stage Object Detection" (Tian et al., ICCV 2019) and its
improved recipe (center sampling, arXiv 2006.09214). A point is a candidate of a GT when it lies
inside the GT box, inside the GT's central region of ``radius * stride`` (center sampling) and when
``max(l, t, r, b)`` falls in its level's scale range; a point claimed by several GTs takes the one
with the smallest area.

Defaults follow the official "imprv" code (REFERENCE.md section 1.1): radius 1.5, ranges
(-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8) with inclusive bounds.
detectron2's FCOS uses the same ranges with strict bounds (``inclusive_ranges=False``).
"""
from typing import Optional, Sequence

import torch

from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, Priors
from .base import BaseAssigner, best_gt_per_prior, per_level_values, point_box_deltas

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

    # ------------------------------------------------------------------------- selection
    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        areas = gt_instances.gt_boxes.area()

        def score(start, end):
            mask = self.candidate_mask(priors, gt_boxes, start, end)
            # larger score = smaller area: the minimum-area GT wins a contested prior
            return torch.where(mask, -areas[start:end, None], areas.new_tensor(-float("inf")))

        _, matched = best_gt_per_prior(
            score, self.gt_chunks(len(gt_boxes), len(priors)), len(priors), gt_boxes.device
        )
        return self.result_from_matches(gt_instances, matched)

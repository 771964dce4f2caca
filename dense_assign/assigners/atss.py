"""ATSS: Adaptive Training Sample Selection.

Paper: "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection" (Zhang et al., CVPR 2020), Algorithm 1. For every GT: on each pyramid level take the k
priors whose centres are closest (L2) to the GT centre; the IoU threshold is the mean plus the
standard deviation of those candidates' IoUs (all levels together); a candidate is positive when its
IoU reaches the threshold and its centre lies inside the GT. A prior claimed by several GTs goes to
the one with the highest IoU. No scale ranges, no ignored priors.

Details of the official code (REFERENCE.md section 2.2), kept here:
- k = min(topk * A, priors on the level), A = priors per location (9 candidates a level for #A=1);
- IoU of the candidates' *anchor boxes* with the GT: the priors' own boxes for an anchor-based model,
  or, for a point model (``anchor_scale`` set), squares of ``anchor_scale * stride`` at the points
  (8 * stride, as RetinaNet #A=1), so FCOS + ATSS matches as the anchor-based detector does;
- unbiased (Bessel) standard deviation; the "inside" test is min(l, t, r, b) > 0.01.

Differences from the official code, none affecting a normal image: an image without GT is all
background (the official code crashes); a GT whose candidates number 1 gets std 0 instead of NaN;
GTs are processed in chunks to bound memory.
"""
from typing import Optional

import torch

from ..losses.targets import aligned_iou
from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner, best_gt_per_prior

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
        """(m, C) indices of each GT's candidate priors: the k closest on every level."""
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        picked, start = [], 0
        for size in priors.level_sizes:
            if size == 0:
                continue
            centers = priors.centers[start : start + size]
            dist = torch.cdist(gt_centers, centers)  # (m, n_l) L2
            k = min(self.topk * priors.num_anchors, size)
            picked.append(dist.topk(k, dim=1, largest=False).indices + start)
            start += size
        return torch.cat(picked, dim=1)

    # ------------------------------------------------------------------ selection
    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        match_boxes = self.matching_boxes(priors)
        R = len(priors)
        thresholds = []

        def score(start, end):
            boxes = gt_boxes[start:end]
            cand = self.candidates(priors, boxes)  # (m, C)
            m, C = cand.shape
            ious = aligned_iou(
                match_boxes[cand.reshape(-1)], boxes[:, None].expand(m, C, 4).reshape(-1, 4)
            ).view(m, C)
            std = ious.std(dim=1) if C > 1 else torch.zeros_like(ious[:, 0])
            thresh = ious.mean(dim=1) + torch.nan_to_num(std, nan=0.0)
            thresholds.append(thresh)
            pts = priors.centers[cand]  # (m, C, 2)
            inside = torch.stack(
                (
                    pts[..., 0] - boxes[:, None, 0],
                    pts[..., 1] - boxes[:, None, 1],
                    boxes[:, None, 2] - pts[..., 0],
                    boxes[:, None, 3] - pts[..., 1],
                ),
                dim=2,
            ).min(dim=2).values > INSIDE_EPS
            positive = (ious >= thresh[:, None]) & inside
            out = torch.full((m, R), -float("inf"), device=gt_boxes.device)
            # the highest IoU wins a prior claimed by several GTs
            out.scatter_(1, cand, torch.where(positive, ious, out.new_tensor(-float("inf"))))
            return out

        _, matched = best_gt_per_prior(score, self.gt_chunks(len(gt_boxes), R), R, gt_boxes.device)
        result = self.result_from_matches(gt_instances, matched)
        result.stats["iou_threshold_mean"] = float(torch.cat(thresholds).mean())
        return result

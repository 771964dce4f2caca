"""Box voting at test time: after NMS, each kept box is replaced by a weighted mean of the candidate
boxes of its class that overlap it.

``model.test_box_voting`` takes a callable ``voting(kept, candidates) -> Instances`` (None: off, the
default), called per image by :class:`~dense_assign.meta_arch.OneStageDetector` with the detections
NMS kept (at most ``max_detections_per_image``) and every candidate that went into NMS (after the
score threshold and the per-level top-k), both with ``pred_boxes``, ``scores`` and
``pred_classes``.

:class:`BoxVoting` is the score voting of PAA (Kim & Lee, ECCV 2020, "Score voting";
mmdetection's ``PAAHead.score_voting``; docs/methods.md, "PAA"): a kept box b becomes
sum_i p_i b_i / sum_i p_i over the candidates b_i of its class with IoU(b, b_i) > 0.01, where
p_i = exp(-(1 - IoU(b, b_i))^2 / sigma) x score_i and sigma = 0.025; its score and class stay.
The kept box is among the candidates (IoU 1), so the sum is never empty for a positive score.
"""

import torch
from detectron2.structures import Boxes, Instances, pairwise_iou

#: sigma_t of the voting weight exp(-(1 - IoU)^2 / sigma_t) (PAA, "Score voting"; mmdetection:
#: ``0.025``).
VOTING_SIGMA = 0.025
#: Candidates vote for a kept box when their IoU with it exceeds this (mmdetection ``> 0.01``).
VOTING_MIN_IOU = 0.01


class BoxVoting:
    """Score-and-IoU-weighted box voting (see module doc)."""

    def __init__(self, *, sigma: float = VOTING_SIGMA, min_iou: float = VOTING_MIN_IOU):
        if not sigma > 0:
            raise ValueError(f"model.test_box_voting.sigma must be > 0, got {sigma}")
        if not 0.0 <= min_iou < 1.0:
            raise ValueError(f"model.test_box_voting.min_iou must be in [0, 1), got {min_iou}")
        self.sigma = float(sigma)
        self.min_iou = float(min_iou)

    def __call__(self, kept: Instances, candidates: Instances) -> Instances:
        if len(kept) == 0 or len(candidates) == 0:
            return kept
        iou = pairwise_iou(kept.pred_boxes, candidates.pred_boxes)  # (D, P): D <= max detections
        same = kept.pred_classes[:, None] == candidates.pred_classes[None, :]
        weight = torch.exp(-((1 - iou) ** 2) / self.sigma) * candidates.scores[None, :]
        weight = torch.where(same & (iou > self.min_iou), weight, torch.zeros_like(weight))
        total = weight.sum(dim=1, keepdim=True)
        voted = (weight @ candidates.pred_boxes.tensor) / total.clamp(
            min=torch.finfo(total.dtype).tiny
        )
        boxes = torch.where(total > 0, voted, kept.pred_boxes.tensor)
        out = Instances(kept.image_size)
        for name, value in kept.get_fields().items():
            out.set(name, value)
        out.pred_boxes = Boxes(boxes)
        return out

    def __repr__(self) -> str:
        return f"BoxVoting(sigma={self.sigma!r}, min_iou={self.min_iou!r})"

"""The loss module of the hard-assignment detectors (FCOS, RetinaNet, ATSS, Pseudo-IoU, IoU-aware,
SAPD): sigmoid focal loss + box loss + optional quality BCE, honouring soft prior weights.

Choices, each a constructor argument with the recipe's value set in its config:

- ``box_loss``: "giou" (FCOS imprv, ATSS) or "iou" (-log IoU, UnitBox / FCOS) on decoded boxes,
  or "smooth_l1" on the regression deltas (RetinaNet; beta 0 is L1).
- ``box_weighting``: "none", or "centerness": each positive's box loss is weighted by its
  centerness target and the sum is divided by the sum of those targets (official FCOS / ATSS).
- ``quality``: target of the quality branch: "none", "centerness" or "iou" (IoU of the decoded box
  with its GT; ``iou_target_grad`` lets the gradient flow through it into the box branch, as the
  official IoU-aware RetinaNet, or detaches it).
- ``normalizer``: "ema", detectron2's exponential moving average of the positive count (per
  process, momentum 0.9), or "num_pos", the positive count summed over processes and divided by
  their number, at least 1 (official FCOS / ATSS / Pseudo-IoU).

Soft weights (``AssignResult.pos_weights``, SAPD) scale the classification and box losses of the
positives, and the positive count becomes the sum of those weights.

An image without positives gives zero box / quality losses that still reach every output of the
head (``0 * pred.sum()``), so DDP sees every parameter used.
"""

import math
from typing import List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from fvcore.nn import giou_loss, sigmoid_focal_loss, smooth_l1_loss
from torch import Tensor, nn

from ..deferred import put_scalar
from ..structures import AssignResult, DensePredictions, Priors
from .targets import aligned_iou, centerness_targets

BOX_LOSSES = ("giou", "iou", "smooth_l1")
BOX_WEIGHTINGS = ("none", "centerness")
QUALITY_TARGETS = ("none", "centerness", "iou")
NORMALIZERS = ("ema", "num_pos")


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"model.loss.{name}={value!r}; allowed: {', '.join(map(str, allowed))}")


class DenseLoss(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_loss: str = "giou",
        smooth_l1_beta: float = 0.0,
        box_weighting: str = "none",
        quality: str = "none",
        iou_target_grad: bool = True,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        quality_weight: float = 1.0,
        normalizer: str = "num_pos",
        ema_init: float = 100.0,
        ema_momentum: float = 0.9,
    ):
        super().__init__()
        _check("box_loss", box_loss, BOX_LOSSES)
        _check("box_weighting", box_weighting, BOX_WEIGHTINGS)
        _check("quality", quality, QUALITY_TARGETS)
        _check("normalizer", normalizer, NORMALIZERS)
        if focal_alpha > 1.0:  # a negative alpha disables the alpha weighting (fvcore)
            raise ValueError(f"model.loss.focal_alpha must be <= 1, got {focal_alpha}")
        if focal_gamma < 0:
            raise ValueError(f"model.loss.focal_gamma must be >= 0, got {focal_gamma}")
        for key, value in (
            ("cls_weight", cls_weight),
            ("box_weight", box_weight),
            ("quality_weight", quality_weight),
            ("smooth_l1_beta", smooth_l1_beta),
        ):
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"model.loss.{key} must be a finite value >= 0, got {value}")
        if not 0.0 <= ema_momentum < 1.0 or ema_init <= 0:
            raise ValueError(
                f"model.loss.ema_momentum must be in [0, 1) and ema_init > 0, got "
                f"{ema_momentum}, {ema_init}"
            )
        self.num_classes = num_classes
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_loss = box_loss
        self.smooth_l1_beta = smooth_l1_beta
        self.box_weighting = box_weighting
        self.quality = quality
        self.iou_target_grad = iou_target_grad
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.quality_weight = quality_weight
        self.normalizer = normalizer
        self.ema_init = ema_init
        self.ema_momentum = ema_momentum
        # EMA states are buffers so that they are saved in checkpoints and resume exactly.
        self.register_buffer("ema_num_pos", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("ema_box_weight", torch.tensor(float("nan"), dtype=torch.float64))

    # ------------------------------------------------------------------ normalizers
    def _normalize(self, buffer_name: str, local_value: Tensor, floor: float = 1.0) -> Tensor:
        """The normalizer of a summed loss, from this process's count (or weight sum), as a 0-dim
        float32 tensor on the loss's device (no host read: see :mod:`dense_assign.deferred`).

        ``floor``: lower bound (1 for a count, as the official code and detectron2; a tiny value
        for the centerness sum, which the official code divides by as it is).
        """
        value = local_value.detach().to(torch.float64)
        if self.normalizer == "num_pos":
            world = comm.get_world_size()
            if world > 1:
                value = value.clone()
                dist.all_reduce(value)
            return (value / world).clamp(min=floor).float()
        # "ema": detectron2's DenseDetector._ema_update, with the state in a buffer
        buf = getattr(self, buffer_name)
        old = torch.where(torch.isnan(buf), torch.full_like(buf, self.ema_init), buf)
        new = old * self.ema_momentum + value.clamp(min=floor) * (1 - self.ema_momentum)
        if self.training:
            buf.copy_(new)
        return new.float()

    # ------------------------------------------------------------------ loss
    def forward(
        self,
        *,
        priors: Priors,
        predictions: DensePredictions,
        assignments: List[AssignResult],
        box2box_transform,
        gt_instances=None,
    ):
        K = self.num_classes
        num_images = len(assignments)
        labels = torch.stack([a.labels for a in assignments])  # (N, R)
        valid = labels >= 0
        pos = valid & (labels != K)
        weights: Optional[Tensor] = None
        if any(a.pos_weights is not None for a in assignments):
            weights = torch.stack(
                [
                    (
                        a.pos_weights
                        if a.pos_weights is not None
                        else torch.ones_like(a.labels, dtype=torch.float32)
                    )
                    for a in assignments
                ]
            )
        num_pos = pos.sum() if weights is None else weights[pos].sum()
        put_scalar("num_pos_anchors", pos.sum() / num_images)
        normalizer = self._normalize("ema_num_pos", num_pos)

        # classification: focal loss over all non-ignored priors, one-hot without background
        logits = predictions.logits[valid]
        valid_labels = labels[valid]
        target = torch.zeros_like(logits)
        fg = valid_labels != K
        target[fg.nonzero(as_tuple=True)[0], valid_labels[fg]] = 1.0
        loss_cls = sigmoid_focal_loss(
            logits, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
        )
        if weights is not None:
            loss_cls = loss_cls * weights[valid][:, None]
        losses = {"loss_cls": self.cls_weight * loss_cls.sum() / normalizer}

        # box regression on positives
        img_idx, prior_idx = pos.nonzero(as_tuple=True)
        anchors = priors.boxes[prior_idx]
        gt_boxes = torch.stack([a.matched_gt_boxes for a in assignments])[pos]
        deltas = predictions.deltas[pos]
        pred_boxes = None
        if self.box_loss in ("giou", "iou") or self.quality == "iou":
            pred_boxes = box2box_transform.apply_deltas(deltas, anchors)
        if self.box_loss == "giou":
            loss_box = giou_loss(pred_boxes, gt_boxes, reduction="none")
        elif self.box_loss == "iou":
            loss_box = -torch.log(aligned_iou(pred_boxes, gt_boxes).clamp(min=1e-6))
        else:
            target_deltas = box2box_transform.get_deltas(anchors, gt_boxes)
            loss_box = smooth_l1_loss(
                deltas, target_deltas, beta=self.smooth_l1_beta, reduction="none"
            ).sum(dim=1)

        ctr = None
        if self.box_weighting == "centerness" or self.quality == "centerness":
            ctr = centerness_targets(priors.centers[prior_idx], gt_boxes)
        box_w = ctr if self.box_weighting == "centerness" else None
        if weights is not None:
            box_w = weights[pos] if box_w is None else box_w * weights[pos]
        if box_w is None:
            box_sum, box_norm = loss_box.sum(), normalizer
        else:
            box_sum = (loss_box * box_w).sum()
            box_norm = (
                normalizer
                if self.box_weighting == "none"
                else self._normalize("ema_box_weight", box_w.sum(), floor=1e-6)
            )
        # keep every regression output in the graph when there is no positive
        box_sum = box_sum + 0.0 * predictions.deltas.sum()
        losses["loss_box_reg"] = self.box_weight * box_sum / box_norm

        if self.quality != "none":
            if predictions.quality is None:
                raise ValueError(
                    f"model.loss.quality={self.quality!r} needs a quality branch in the head "
                    "(model.head.quality)"
                )
            pred_q = predictions.quality[pos][:, 0]
            if self.quality == "centerness":
                q_target = ctr
            else:
                q_target = aligned_iou(pred_boxes, gt_boxes)
                if not self.iou_target_grad:
                    q_target = q_target.detach()
            override = [a.quality_targets for a in assignments]
            if all(o is not None for o in override):
                q_target = torch.stack(override)[pos]
            loss_q = F.binary_cross_entropy_with_logits(pred_q, q_target, reduction="sum")
            loss_q = loss_q + 0.0 * predictions.quality.sum()
            losses[f"loss_{self.quality}"] = self.quality_weight * loss_q / normalizer
        return losses

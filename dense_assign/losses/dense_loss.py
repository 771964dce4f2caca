"""The loss module of the hard-assignment detectors (FCOS, RetinaNet, ATSS, Pseudo-IoU, IoU-aware,
SAPD): sigmoid focal loss + box loss + optional quality BCE, honouring soft prior weights and soft
classification targets.

Choices, each a constructor argument with the recipe's value set in its config:

- ``cls_loss``: "focal" (RetinaNet's sigmoid focal loss, alpha and gamma) or "quality_focal" (GFL's
  quality focal loss, |y - p|^beta x BCE, for soft targets).
- ``use_cls_targets``: where an assigner gives soft classification targets
  (``AssignResult.cls_targets``: an IoU or an alignment score), a positive's class channel trains
  towards that value instead of 1; False trains every positive towards 1 (an ablation).

- ``box_loss``: "giou" (FCOS imprv, ATSS) or "iou" (-log IoU, UnitBox / FCOS) on decoded boxes,
  or "smooth_l1" on the regression deltas (RetinaNet; beta 0 is L1).
- ``box_weighting``: "none"; "centerness": each positive's box loss is weighted by its
  centerness target and the sum is divided by the sum of those targets (official FCOS / ATSS); or
  "cls_target": weighted by the positive's soft classification target (``AssignResult.cls_targets``)
  and divided by their sum (TOOD and RTMDet weight the box loss by their soft targets).
- ``quality``: target of the quality branch: "none", "centerness" or "iou" (IoU of the decoded box
  with its GT; ``iou_target_grad`` lets the gradient flow through it into the box branch, as the
  official IoU-aware RetinaNet, or detaches it).
- ``normalizer``: "ema", detectron2's exponential moving average of the positive count (per
  process, momentum 0.9), or "num_pos", the positive count summed over processes and divided by
  their number, at least 1 (official FCOS / ATSS / Pseudo-IoU), or "cls_target_sum", the same with
  the sum of the positives' soft classification targets in place of their count (TOOD and RTMDet
  divide by the sum of their soft targets, at least 1; with ``box_weighting="cls_target"`` the box
  loss too).

Soft weights (``AssignResult.loss_weights``, SAPD) scale the classification and box losses of the
priors, and the positive count becomes the sum of the positives' weights.

An image without positives gives zero box / quality losses that still reach every output of the
head (``0 * pred.sum()``), so DDP sees every parameter used.
"""

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from fvcore.nn import giou_loss, sigmoid_focal_loss, smooth_l1_loss
from torch import Tensor, nn

from ..box_ops import centerness, ltrb, pair_iou
from ..deferred import put_scalar
from ..structures import AssignResult, DensePredictions, Priors
from .functional import iou_loss, quality_focal_loss, reduce_mean

CLS_LOSSES = ("focal", "quality_focal")
BOX_LOSSES = ("giou", "iou", "smooth_l1")
BOX_WEIGHTINGS = ("none", "centerness", "cls_target")
QUALITY_TARGETS = ("none", "centerness", "iou")
NORMALIZERS = ("ema", "num_pos", "cls_target_sum")


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"model.loss.{name}={value!r}; allowed: {', '.join(map(str, allowed))}")


class DenseLoss(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        cls_loss: str = "focal",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        qfl_beta: float = 2.0,
        use_cls_targets: bool = True,
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
        _check("cls_loss", cls_loss, CLS_LOSSES)
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
            ("qfl_beta", qfl_beta),
        ):
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"model.loss.{key} must be a finite value >= 0, got {value}")
        if not 0.0 <= ema_momentum < 1.0 or ema_init <= 0:
            raise ValueError(
                f"model.loss.ema_momentum must be in [0, 1) and ema_init > 0, got "
                f"{ema_momentum}, {ema_init}"
            )
        self.num_classes = num_classes
        self.cls_loss = cls_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.qfl_beta = float(qfl_beta)
        self.use_cls_targets = bool(use_cls_targets)
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
        if self.normalizer in ("num_pos", "cls_target_sum"):
            return reduce_mean(local_value, local_value.device).clamp(min=floor).float()
        value = local_value.detach().to(torch.float64)
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
    ):
        K = self.num_classes
        num_images = len(assignments)
        labels = torch.stack([a.labels for a in assignments])  # (N, R)
        valid = labels >= 0
        pos = valid & (labels != K)
        weights = _stack_optional([a.loss_weights for a in assignments], labels, 1.0)
        soft = _stack_optional([a.cls_targets for a in assignments], labels, 1.0)
        for option, value in (
            ("box_weighting", self.box_weighting),
            ("normalizer", self.normalizer),
        ):
            if value in ("cls_target", "cls_target_sum") and soft is None:
                raise ValueError(
                    f"model.loss.{option}={value!r} needs an assigner that gives soft "
                    "classification targets (AssignResult.cls_targets)"
                )
        num_pos = pos.sum() if weights is None else weights[pos].sum()
        if self.normalizer == "cls_target_sum":
            num_pos = soft[pos].sum()
        put_scalar("num_pos_anchors", pos.sum() / num_images)
        normalizer = self._normalize("ema_num_pos", num_pos)

        # classification over all non-ignored priors: a positive's class channel trains towards
        # 1, or its soft target; every other channel towards 0
        logits = predictions.logits[valid]
        valid_labels = labels[valid]
        target = torch.zeros_like(logits)
        fg = valid_labels != K
        value: object = 1.0
        if self.use_cls_targets and soft is not None:
            value = soft[valid][fg].to(target.dtype)
        target[fg.nonzero(as_tuple=True)[0], valid_labels[fg]] = value
        if self.cls_loss == "focal":
            loss_cls = sigmoid_focal_loss(
                logits, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
            )
        else:
            loss_cls = quality_focal_loss(logits, target, beta=self.qfl_beta)
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
            loss_box = iou_loss(pred_boxes, gt_boxes)
        else:
            target_deltas = box2box_transform.get_deltas(anchors, gt_boxes)
            loss_box = smooth_l1_loss(
                deltas, target_deltas, beta=self.smooth_l1_beta, reduction="none"
            ).sum(dim=1)

        ctr = None
        if self.box_weighting == "centerness" or self.quality == "centerness":
            ctr = centerness(ltrb(priors.centers[prior_idx], gt_boxes))
        box_w = ctr if self.box_weighting == "centerness" else None
        if self.box_weighting == "cls_target":
            box_w = soft[pos].to(loss_box.dtype)
        if weights is not None:
            box_w = weights[pos] if box_w is None else box_w * weights[pos]
        if box_w is None:
            box_sum, box_norm = loss_box.sum(), normalizer
        else:
            box_sum = (loss_box * box_w).sum()
            box_norm = (
                normalizer
                if self.box_weighting == "none"
                else self._normalize(
                    "ema_box_weight",
                    box_w.sum(),
                    floor=1.0 if self.normalizer == "cls_target_sum" else 1e-6,
                )
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
                q_target = pair_iou(pred_boxes, gt_boxes)
                if not self.iou_target_grad:
                    q_target = q_target.detach()
            loss_q = F.binary_cross_entropy_with_logits(pred_q, q_target, reduction="sum")
            loss_q = loss_q + 0.0 * predictions.quality.sum()
            losses[f"loss_{self.quality}"] = self.quality_weight * loss_q / normalizer
        return losses


def _stack_optional(values: List[Optional[Tensor]], like: Tensor, fill: float) -> Optional[Tensor]:
    """(N, R) float32 stack of per-image optional (R,) tensors, ``fill`` for the images without
    one; None when no image has one."""
    if all(v is None for v in values):
        return None
    return torch.stack(
        [
            v if v is not None else torch.full_like(like[i], fill, dtype=torch.float32)
            for i, v in enumerate(values)
        ]
    )

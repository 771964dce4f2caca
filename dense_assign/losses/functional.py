"""Loss terms shared by the loss modules and by the assigners that rank with a loss (SAPD's instance
loss): elementwise functions, no reduction, no state."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor

from ..box_ops import pair_iou

#: floor of the IoU inside -log IoU (UnitBox / FCOS's IoU loss), so that a box that misses its GT
#: gives a finite loss.
IOU_FLOOR = 1e-6


def to_float32(x: Tensor) -> Tensor:
    """fp16 / bf16 (AMP) to float32; float32 / float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def reduce_mean(value, device) -> Tensor:
    """Mean of a per-process number over all processes, as a 0-dim float64 tensor on ``device``
    (no host read: see :mod:`dense_assign.deferred`)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=device).detach().clone()
    world = comm.get_world_size()
    if world > 1:
        dist.all_reduce(t)
    return t / world


def iou_loss(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """(P,) -log IoU of matched (P, 4) box pairs, the IoU floored at :data:`IOU_FLOOR`."""
    return -torch.log(pair_iou(pred_boxes, target_boxes).clamp(min=IOU_FLOOR))


def quality_focal_loss(logits: Tensor, targets: Tensor, beta: float = 2.0) -> Tensor:
    """Elementwise quality focal loss (GFL, Li et al., NeurIPS 2020, Eq. 5): binary cross-entropy
    towards a soft target y in [0, 1], scaled by |y - sigmoid(x)|^beta. With y in {0, 1} it is the
    focal loss without alpha."""
    scale = (targets - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * scale

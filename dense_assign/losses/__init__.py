from .autoassign_loss import AutoAssignLoss
from .dense_loss import BOX_LOSSES, NORMALIZERS, QUALITY_TARGETS, DenseLoss
from .targets import aligned_iou, centerness_targets

__all__ = [k for k in globals().keys() if not k.startswith("_")]

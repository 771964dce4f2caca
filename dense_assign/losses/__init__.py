from .autoassign_loss import AutoAssignLoss
from .dense_loss import BOX_LOSSES, CLS_LOSSES, NORMALIZERS, QUALITY_TARGETS, DenseLoss

__all__ = [k for k in globals().keys() if not k.startswith("_")]

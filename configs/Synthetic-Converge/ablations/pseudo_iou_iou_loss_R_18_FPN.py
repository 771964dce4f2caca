# Pseudo-IoU paper Table 3, row "Pseudo-IoU" (no GIoU, no centerness): the AF-baseline with the
# Pseudo-IoU filter (T = 0.4, Table 1a), IoU loss. Threshold sweep: model.assigner.threshold=0.5
from detectron2.config import LazyCall as L

from dense_assign.assigners import PseudoIoUAssigner

from ..af_baseline_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner = L(PseudoIoUAssigner)(num_classes="${..num_classes}", threshold=0.4)
train.output_dir = "./output/converge/pseudo_iou_iou_loss_R_18_FPN"

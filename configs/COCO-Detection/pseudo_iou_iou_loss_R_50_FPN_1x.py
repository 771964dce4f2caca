# Pseudo-IoU Table 3 row 3 (36.8 AP): the AF-baseline with the Pseudo-IoU assigner (T = 0.4), IoU
# loss, no centerness.
from detectron2.config import LazyCall as L

from dense_assign.assigners import PseudoIoUAssigner

from .af_baseline_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.assigner = L(PseudoIoUAssigner)(num_classes="${..num_classes}", threshold=0.4)
train.output_dir = "./output/coco/pseudo_iou_iou_loss_R_50_FPN_1x"

# Pseudo-IoU paper Table 3, last row: Pseudo-IoU + GIoU + centerness (configs/common/models/pseudo_iou.py),
# converging CPU benchmark. Threshold: model.assigner.threshold=0.5 ; metrics of Table 2:
# model.assigner.metric=scaled_box model.assigner.threshold=0.6
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.pseudo_iou import model

use_small_model(model)
train.output_dir = "./output/converge/pseudo_iou_R_18_FPN"

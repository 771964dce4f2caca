# Pseudo-IoU paper Table 3, last row: Pseudo-IoU + GIoU + centerness (configs/common/models/pseudo_iou.py),
# synthetic, CPU. Threshold: model.assigner.threshold=0.5 ; metrics of Table 2:
# model.assigner.metric=scaled_box model.assigner.threshold=0.6
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.pseudo_iou import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/pseudo_iou_R_18_FPN"

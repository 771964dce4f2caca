# IoU-aware RetinaNet R-101-FPN 1x, 800 / 1333 (paper Table 1).
from .iou_aware_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/coco/iou_aware_retinanet_R_101_FPN_1x"

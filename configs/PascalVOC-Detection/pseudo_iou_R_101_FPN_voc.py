# Pseudo-IoU on Pascal VOC 07+12 -> VOC 2007 test, the Sec. 4.1 recipe: R-101, 600 / 1000 px,
# 12 epochs (x0.1 at epochs 8 and 10), warmup 500, LR 0.01, 16 images; IoU loss (lambda 1), score
# threshold 0.05, NMS 0.5. Table 1a: 79.0 mAP at T = 0.4 (baseline 76.9, 8-epoch setting).
from ..common.models.pseudo_iou import model
from .fcos_R_50_FPN_voc import dataloader, lr_multiplier, optimizer, train

model.num_classes = 20
model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.freeze_at = 2
model.loss.box_loss = "iou"  # "focal loss and IoU loss" (Sec. 4.1)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/voc/pseudo_iou_R_101_FPN_voc"

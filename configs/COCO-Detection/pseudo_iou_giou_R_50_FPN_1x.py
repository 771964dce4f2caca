# Pseudo-IoU Table 3 row 4 (37.1 AP): + GIoU loss, still no centerness. Row 5 (+ centerness,
# 37.4 AP) is pseudo_iou_R_50_FPN_1x.py.
from .pseudo_iou_iou_loss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.loss.box_loss = "giou"
train.output_dir = "./output/coco/pseudo_iou_giou_R_50_FPN_1x"

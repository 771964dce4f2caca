# Pseudo-IoU paper Table 3, row "Pseudo-IoU + GIoU" (no centerness branch).
from .pseudo_iou_iou_loss_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.loss.box_loss = "giou"
train.output_dir = "./output/converge/pseudo_iou_giou_R_18_FPN"

# IoU-aware RetinaNet on Pascal VOC 07+12 -> 2007 test (paper Table 5), 600 / 1000 px, 12 epochs.
# Compare with retinanet_R_50_FPN_voc.py, the same recipe without the IoU branch.
from ..common.models.iou_aware_retinanet import model
from .retinanet_R_50_FPN_voc import dataloader, lr_multiplier, optimizer, train

model.num_classes = 20
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/voc/iou_aware_retinanet_R_50_FPN_voc"

# RetinaNet on Pascal VOC 07+12 -> 2007 test, 600 / 1000 px, 12 epochs at 16 images (the baseline
# of the IoU-aware paper's Table 5).
from ..common.models.retinanet import model
from .fcos_R_50_FPN_voc import dataloader, lr_multiplier, optimizer, train

model.num_classes = 20
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/voc/retinanet_R_50_FPN_voc"

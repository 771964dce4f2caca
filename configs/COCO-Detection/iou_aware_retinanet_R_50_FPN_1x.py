# IoU-aware RetinaNet R-50-FPN 1x at 800 / 1333 (paper Table 1: RetinaNet 35.9 -> 36.9, 37.8 with the
# gradient through the IoU target, COCO test-dev), detectron2's RetinaNet schedule.
#   python train_net.py --config-file configs/COCO-Detection/iou_aware_retinanet_R_50_FPN_1x.py --num-gpus 8
from ..common.models.iou_aware_retinanet import model
from .retinanet_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.augmentations[0].short_edge_length = 800  # single scale (Sec. 4.1)
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/iou_aware_retinanet_R_50_FPN_1x"

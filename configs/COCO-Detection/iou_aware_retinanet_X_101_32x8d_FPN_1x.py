# IoU-aware RetinaNet ResNeXt-101-32x8d-FPN 1x, 800 / 1333 (paper Table 1), from detectron2's FAIR
# ImageNet weights (which expect pixel std 57.4, 57.1, 58.4 and stride in the 3x3 conv).
from detectron2.config import LazyCall as L

from dense_assign.model_zoo import resnext_stages

from .iou_aware_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages = L(resnext_stages)(
    depth=101, num_groups=32, width_per_group=8, norm="FrozenBN", stride_in_1x1=False
)
model.pixel_std = [57.375, 57.120, 58.395]
train.init_checkpoint = "detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl"
train.output_dir = "./output/coco/iou_aware_retinanet_X_101_32x8d_FPN_1x"

# Pseudo-IoU R-50-FPN 1x (Table 3, official piou_r50_caffe_fpn_gn-head_1x_coco: 38.4 AP): two-scale
# training (shorter side 640 or 800, max 1333), 12 epochs ~ 90k iterations at 16 images, constant
# warmup 500 x 1/3, LR 0.01, bias LR x2, gradient clipping 35 (docs/methods.md, "Training recipes").
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..common.data.coco import dataloader
from ..common.models.pseudo_iou import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(640, 800), max_size=1333, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/pseudo_iou_R_50_FPN_1x"
# official recipe: gradient clipping at global norm 35 (docs/methods.md, "Training recipes")
train.clip_grad.enabled = True
train.clip_grad.clip_value = 35.0

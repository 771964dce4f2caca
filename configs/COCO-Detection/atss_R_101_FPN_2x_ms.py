# ATSS R-101-FPN 2x with multi-scale training (640-800), official ATSS_R_101_FPN_2x: 43.5 AP minival
# (docs/methods.md, "Training recipes").
from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.atss import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_2x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.freeze_at = 2
dataloader.train.mapper.augmentations = coco_multiscale_train
train.max_iter = 180000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/coco/atss_R_101_FPN_2x_ms"

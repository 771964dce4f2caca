# RetinaNet R-50-FPN 1x (9 anchors, configs/common/models/retinanet.py), detectron2's COCO recipe:
# multi-scale 640-800 training, linear warmup 1000 from 0.001, LR 0.01 at 16 images, 90k iterations.
# detectron2 MODEL_ZOO: 37.4 AP (yaml config, same recipe).
from detectron2.model_zoo import get_config

from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.retinanet import model
from ..common.train import train

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_1x
dataloader.train.mapper.augmentations = coco_multiscale_train
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/retinanet_R_50_FPN_1x"

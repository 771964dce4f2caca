# FCOS R-50-FPN 1x with detectron2's own FCOS choices (configs/common/models/fcos_detectron2.py) and
# detectron2's COCO recipe (multi-scale 640-800, linear warmup 1000 from 0.001), for comparison
# with detectron2's FCOS.
from detectron2.model_zoo import get_config

from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.fcos_detectron2 import model
from ..common.train import train

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_1x
dataloader.train.mapper.augmentations = coco_multiscale_train
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/fcos_detectron2_R_50_FPN_1x"

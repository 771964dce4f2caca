# Pseudo-IoU R-101-FPN, the test-dev recipe of Sec. 4.1: 24 epochs (~180k iterations at 16 images,
# x0.1 at epochs 16 and 22), multi-scale 640-800 training, warmup 1500 iterations, LR 0.01.
# Official R-101 1x: 40.4 AP.
from detectron2.config import LazyCall as L

from dense_assign.model_zoo import step_schedule

from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.pseudo_iou import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.freeze_at = 2
dataloader.train.mapper.augmentations = coco_multiscale_train
lr_multiplier = L(step_schedule)(max_iter=180000, steps=[120000, 165000], warmup_iters=1500)
train.max_iter = 180000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/coco/pseudo_iou_R_101_FPN_2x_ms"

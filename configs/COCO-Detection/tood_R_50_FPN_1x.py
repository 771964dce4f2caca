# TOOD's assignment and losses on the FCOS + ATSS model (configs/common/models/tood.py; TOOD's
# T-head is out of scope). 1x: 16 images, LR 0.01, 90k iterations (x0.1 at 60k, 80k), ATSS until
# 30k (4 of 12 epochs), single-scale 800 / 1333. mmdetection's TOOD R-50 1x (with the T-head):
# 42.4 AP (docs/methods.md, "TOOD task-aligned assignment").
#   python train_net.py --config-file configs/COCO-Detection/tood_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.tood import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2  # stem + res2 frozen, as every ImageNet-initialized model
train.output_dir = "./output/coco/tood_R_50_FPN_1x"

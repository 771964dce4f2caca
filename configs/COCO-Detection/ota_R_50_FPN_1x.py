# OTA on the FCOS R-50-FPN model (configs/common/models/ota.py) with the 1x recipe of the other
# COCO configs here (docs/methods.md, "Training recipes"): 16 images, LR 0.01, 90k iterations (x0.1
# at 60k, 80k), single-scale 800 / 1333 with flips: the official OTA R-50 1x recipe (40.7 AP).
#   python train_net.py --config-file configs/COCO-Detection/ota_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.ota import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2  # stem + res2 frozen, as every ImageNet-initialized R-50
train.output_dir = "./output/coco/ota_R_50_FPN_1x"

# ATSS RetinaNet (#A=1) + ATSS, the official recipe (configs/common/models/atss.py). Official ATSS_R_50_FPN_1x: 39.3 AP minival.
# 1x: 16 images, LR 0.01, 90k iterations (x0.1 at 60k, 80k), constant warmup 500 x 1/3, bias LR x2,
# single-scale 800 / 1333 (docs/methods.md, "Training recipes").
#   python train_net.py --config-file configs/COCO-Detection/atss_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.atss import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/atss_R_50_FPN_1x"

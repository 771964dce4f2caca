# FCOS R-50-FPN 1x, the official "imprv" recipe (docs/methods.md, "Training recipes"): 16 images,
# LR 0.01, 90k iterations (x0.1 at 60k, 80k), constant warmup 500 x 1/3, bias LR x2, single-scale
# 800 / 1333.
# Official FCOS_imprv_R_50_FPN_1x: 38.7 AP on minival.
#   python train_net.py --config-file configs/COCO-Detection/fcos_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.fcos import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

# stem + res2 frozen, as every ImageNet-initialized R-50 here
model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/fcos_R_50_FPN_1x"

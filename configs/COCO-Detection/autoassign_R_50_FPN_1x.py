# AutoAssign R-50-FPN 1x, the paper's recipe (Sec. 4.1) and the official one (docs/methods.md,
# "Training recipes"): 16 images, LR 0.01, 90k iterations (x0.1 at 60k, 80k), single-scale
# 800 / 1333 with flips.
# Paper / official AutoAssign_Res50_FPN_1x: 40.5 AP on val2017 (Table 1).
#   python train_net.py --config-file configs/COCO-Detection/autoassign_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.autoassign import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2  # stem + res2 frozen, as every ImageNet-initialized model
train.output_dir = "./output/coco/autoassign_R_50_FPN_1x"

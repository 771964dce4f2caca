# Dynamic soft labels (RTMDet) on the FCOS R-50-FPN model (configs/common/models/dsl.py) with the 1x
# recipe of the other COCO configs here (docs/methods.md, "Training recipes"): 16 images, LR 0.01,
# 90k iterations (x0.1 at 60k, 80k), single-scale 800 / 1333. Not the paper's recipe (300 epochs,
# strong augmentation, its own backbone and head); its numbers are cited in
# projects/DynamicSoftLabel/README.md.
#   python train_net.py --config-file configs/COCO-Detection/dsl_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.dsl import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2  # stem + res2 frozen, as every ImageNet-initialized R-50
train.output_dir = "./output/coco/dsl_R_50_FPN_1x"

# SAPD R-50-FPN 1x (Sec. 3.4, 4.1): 16 images, LR 0.01, 90k iterations (x0.1 at 60k, 80k), flips
# only, 800 px; phase two (soft-selected levels) from iteration 45k. Paper: 38.0 AP on val2017
# (Table 2, without BFP). Table 2's other rows are overrides of this config (projects/SAPD/README.md).
#   python train_net.py --config-file configs/COCO-Detection/sapd_R_50_FPN_1x.py --num-gpus 8
from ..common.data.coco import dataloader
from ..common.models.sapd import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2  # stem + res2 frozen (ImageNet-initialized R-50)
train.output_dir = "./output/coco/sapd_R_50_FPN_1x"

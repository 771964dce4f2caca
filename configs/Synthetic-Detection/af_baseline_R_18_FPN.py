# Pseudo-IoU paper Table 3, row "AF-Baseline" (configs/common/models/af_baseline.py), synthetic, CPU.
from ..common.data.synthetic import dataloader
from ..common.models.af_baseline import model
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/af_baseline_R_18_FPN"

# Pseudo-IoU paper Table 3, row "AF-Baseline" (configs/common/models/af_baseline.py), on the converging CPU benchmark.
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.af_baseline import model

use_small_model(model)
train.output_dir = "./output/converge/af_baseline_R_18_FPN"

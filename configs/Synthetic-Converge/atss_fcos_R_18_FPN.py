# FCOS + ATSS, anchor-free on the converging CPU benchmark (configs/common/converge_recipe.py).
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.atss_fcos import model

use_small_model(model)
train.output_dir = "./output/converge/atss_fcos_R_18_FPN"

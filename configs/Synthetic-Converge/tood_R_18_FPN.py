# TOOD's recipe (configs/common/models/tood.py: ATSS for the first third, then the task-aligned
# assigner) on the converging CPU benchmark (configs/common/converge_recipe.py).
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.tood import model

use_small_model(model)
train.output_dir = "./output/converge/tood_R_18_FPN"

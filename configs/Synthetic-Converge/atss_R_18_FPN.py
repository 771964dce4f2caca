# ATSS RetinaNet on the converging CPU benchmark (same recipe as the other synthetic configs).
from ..common.models.atss import model
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model

use_small_model(model)
train.output_dir = "./output/converge/atss_R_18_FPN"

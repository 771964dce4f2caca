# ATSS with RetinaNet's 9 anchors a location (#A=9, ATSS paper Table 6) on the converging CPU benchmark.
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.atss_A9 import model

use_small_model(model)
train.output_dir = "./output/converge/atss_A9_R_18_FPN"

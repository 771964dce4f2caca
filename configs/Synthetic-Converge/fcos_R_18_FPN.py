# FCOS (official imprv recipe, configs/common/models/fcos.py) on the converging CPU benchmark.
#   python train_net.py --config-file configs/Synthetic-Converge/fcos_R_18_FPN.py
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.fcos import model

use_small_model(model)
train.output_dir = "./output/converge/fcos_R_18_FPN"

# AutoAssign (configs/common/models/autoassign.py) on the converging CPU benchmark.
#   python train_net.py --config-file configs/Synthetic-Converge/autoassign_R_18_FPN.py
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.autoassign import model

use_small_model(model)
train.output_dir = "./output/converge/autoassign_R_18_FPN"

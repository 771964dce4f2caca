# PAA (configs/common/models/paa.py) on the converging CPU benchmark.
#   python train_net.py --config-file configs/Synthetic-Converge/paa_R_18_FPN.py
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.paa import model

use_small_model(model)
train.output_dir = "./output/converge/paa_R_18_FPN"

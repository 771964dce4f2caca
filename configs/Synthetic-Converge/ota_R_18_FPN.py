# OTA (configs/common/models/ota.py) on the converging CPU benchmark.
#   python train_net.py --config-file configs/Synthetic-Converge/ota_R_18_FPN.py
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.ota import model

use_small_model(model)
train.output_dir = "./output/converge/ota_R_18_FPN"

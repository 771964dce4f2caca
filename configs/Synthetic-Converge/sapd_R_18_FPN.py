# SAPD (configs/common/models/sapd.py: soft-weighted points + soft-selected levels) on the
# converging CPU benchmark; phase two from half of train.max_iter.
#   python train_net.py --config-file configs/Synthetic-Converge/sapd_R_18_FPN.py
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.sapd import model

use_small_model(model)
train.output_dir = "./output/converge/sapd_R_18_FPN"

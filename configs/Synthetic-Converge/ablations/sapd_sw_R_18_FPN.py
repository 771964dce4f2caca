# SAPD's Table 2, row 2 (FSAF + soft-weighted anchor points) on the converging CPU benchmark: soft
# point weights (Eq. 4, eta = 1), each instance on its minimal-loss level for the whole training,
# no feature selection net.
from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.sapd import model

use_small_model(model)
model.assigner.soft_levels = False  # SW without SS (Table 2 row 2)
train.output_dir = "./output/converge/sapd_sw_R_18_FPN"

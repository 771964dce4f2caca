# SAPD's Table 2, row 1 (FSAF baseline) on the converging CPU benchmark: the SAPD detector with FSAF's
# online feature selection only: each instance on its minimal-loss level for the whole training,
# no soft point weights, no feature selection net.
from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.sapd import model

use_small_model(model)
model.assigner.soft_point_weights = False  # no SW (Table 2 row 1)
model.assigner.soft_levels = False  # no SS: hard min-loss level throughout (FSAF)
train.output_dir = "./output/converge/sapd_fsaf_R_18_FPN"

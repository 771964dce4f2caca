# SAPD's Table 2, row 1 (FSAF baseline) on the synthetic shapes, CPU: the SAPD detector with FSAF's
# online feature selection only: each instance on its minimal-loss level for the whole training,
# no soft point weights, no feature selection net.
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.sapd import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
model.assigner.soft_point_weights = False  # no SW (Table 2 row 1)
model.assigner.soft_levels = False  # no SS: hard min-loss level throughout (FSAF)
train.output_dir = "./output/synthetic/sapd_fsaf_R_18_FPN"

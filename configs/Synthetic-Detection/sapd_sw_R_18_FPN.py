# SAPD's Table 2, row 2 (FSAF + soft-weighted anchor points) on the synthetic shapes, CPU: soft
# point weights (Eq. 4, eta = 1), each instance on its minimal-loss level for the whole training,
# no feature selection net.
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.sapd import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
model.assigner.soft_levels = False  # SW without SS (Table 2 row 2)
train.output_dir = "./output/synthetic/sapd_sw_R_18_FPN"

# TOOD's recipe (configs/common/models/tood.py: ATSS for the first third, then the task-aligned
# assigner) on the synthetic shapes, CPU.
#   python train_net.py --config-file configs/Synthetic-Detection/tood_R_18_FPN.py
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.tood import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7  # the synthetic dataset's classes (dense_assign.data.synthetic)
train.output_dir = "./output/synthetic/tood_R_18_FPN"

# PAA (configs/common/models/paa.py) on the synthetic shapes, CPU.
#   python train_net.py --config-file configs/Synthetic-Detection/paa_R_18_FPN.py
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.paa import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7  # the synthetic dataset's classes (dense_assign.data.synthetic)
train.output_dir = "./output/synthetic/paa_R_18_FPN"

# FCOS + ATSS, anchor-free on the synthetic shapes, CPU (same recipe as the other synthetic configs).
from ..common.data.synthetic import dataloader
from ..common.models.atss_fcos import model
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/atss_fcos_R_18_FPN"

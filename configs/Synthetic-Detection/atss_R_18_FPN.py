# ATSS RetinaNet on the synthetic shapes, CPU (same recipe as the other synthetic configs).
from ..common.data.synthetic import dataloader
from ..common.models.atss import model
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/atss_R_18_FPN"

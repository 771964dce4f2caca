# RetinaNet (9 anchors, max-IoU 0.4 / 0.5, smooth-L1, configs/common/models/retinanet.py) on the
# synthetic shapes, CPU.
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.retinanet import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/retinanet_R_18_FPN"

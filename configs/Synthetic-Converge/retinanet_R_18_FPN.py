# RetinaNet (9 anchors, max-IoU 0.4 / 0.5, smooth-L1, configs/common/models/retinanet.py) on the
# synthetic shapes, CPU.
from ..common.models.retinanet import model
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model

use_small_model(model)
train.output_dir = "./output/converge/retinanet_R_18_FPN"

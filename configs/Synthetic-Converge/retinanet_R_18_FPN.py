# RetinaNet (9 anchors, max-IoU 0.4 / 0.5, smooth-L1, configs/common/models/retinanet.py) on the
# converging CPU benchmark.
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.retinanet import model

use_small_model(model)
train.output_dir = "./output/converge/retinanet_R_18_FPN"

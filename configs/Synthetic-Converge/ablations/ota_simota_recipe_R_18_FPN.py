# OTA's assignment (optimal transport, OTAAssigner with its defaults) in SimOTA's recipe
# (configs/common/models/simota.py: points at (k + 0.5) x stride, the IoU as the soft class target
# in a quality focal loss, GIoU x 2, no IoU branch): one config line from the SimOTA run, so the two
# differ in the assignment only. The OTA config itself keeps the official code's loss (hard labels,
# IoU-weighted GIoU, IoU branch); projects/OTA/README.md compares the three.
from detectron2.config import LazyCall as L

from dense_assign.assigners import OTAAssigner

from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.simota import model

use_small_model(model)
model.assigner = L(OTAAssigner)(
    num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
)
train.output_dir = "./output/converge/ota_simota_recipe_R_18_FPN"

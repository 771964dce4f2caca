# PAA's assignment (PAAAssigner with its defaults: max-IoU 0.1, 9 lowest-score anchors per level, the
# two-component mixture) in ATSS's recipe (configs/common/models/atss.py: the same 8 x stride anchors,
# GIoU x 2 weighted by centerness, centerness branch, no box voting): one config line from the ATSS
# run, so the two differ in the assignment only. projects/PAA/README.md compares them.
from detectron2.config import LazyCall as L

from dense_assign.assigners import PAAAssigner

from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.atss import model

use_small_model(model)
model.assigner = L(PAAAssigner)(
    num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
)
train.output_dir = "./output/converge/paa_atss_recipe_R_18_FPN"

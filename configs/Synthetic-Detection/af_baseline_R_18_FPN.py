# The anchor-free baseline of the Pseudo-IoU paper (Sec. 3, Table 1a with T = 0): every point inside
# a GT is positive (FCOS scale ranges kept, no center sampling), focal + IoU loss, no centerness,
# score = class probability, NMS 0.5 (Sec. 4.1).
from detectron2.config import LazyCall as L

from dense_assign.assigners import InsideBoxAssigner

from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.fcos import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
model.assigner = L(InsideBoxAssigner)(num_classes="${..num_classes}")
model.head.quality = "none"
model.loss.quality = "none"
model.loss.box_loss = "iou"  # IoU loss, lambda = 1 (Sec. 4.1)
model.loss.box_weighting = "none"
model.test_score_fn = "cls"
model.test_nms_thresh = 0.5
train.output_dir = "./output/synthetic/af_baseline_R_18_FPN"

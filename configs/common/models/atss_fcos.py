# FCOS + ATSS (anchor-free; ATSS paper Table "FCOS + ATSS", 39.2 AP): point priors regressing
# (l, t, r, b) / stride, matched through squares of 8 * stride at the points (official
# REGRESSION_TYPE='POINT': box-output bias 4, GIoU x 2.0, centerness weighting; docs/methods.md,
# "ATSS").
from detectron2.config import LazyCall as L

from dense_assign.assigners import ATSSAssigner

from .fcos import model

model.assigner = L(ATSSAssigner)(num_classes="${..num_classes}", topk=9, anchor_scale=8.0)
model.head.bbox_reg_bias = 4.0  # official atss.py, POINT regression type (docs/methods.md, "ATSS")
model.loss.box_weight = 2.0

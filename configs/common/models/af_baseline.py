# The anchor-free baseline of the Pseudo-IoU paper (Sec. 3 and Table 3 "AF-Baseline"): every point
# inside a GT is positive (FCOS scale ranges kept, no center sampling), focal + IoU loss (lambda = 1,
# Sec. 4.1), no centerness branch, score = class probability, NMS 0.5.
from detectron2.config import LazyCall as L

from dense_assign.assigners import InsideBoxAssigner

from .fcos import model

model.assigner = L(InsideBoxAssigner)(num_classes="${..num_classes}")
model.head.quality = "none"
model.loss.quality = "none"
model.loss.box_loss = "iou"
model.loss.box_weighting = "none"
model.test_score_fn = "cls"
model.test_nms_thresh = 0.5

# IoU-aware RetinaNet (Wu, Li, Wang; IVC 2020): RetinaNet (configs/common/models/retinanet.py) with
# an IoU prediction branch, one 3x3 conv on the last box-tower layer with one output per anchor
# (Sec. 3.1); BCE between the predicted IoU and the IoU of the decoded box with its GT, on positives,
# weight 1, normalized like the other losses (Eq. 3-4). The gradient flows through the IoU target into
# the box branch, as the official code (REFERENCE.md 6.2; the paper's dagger rows). Detection
# confidence cls^a x IoU^(1-a), a = 0.5 (Eq. 7; official code), before the per-level top-k and the
# 0.05 threshold, NMS 0.5. Alpha sweep: model.test_score_fn.alpha=0.4 (Tables 3-4).
from detectron2.config import LazyCall as L

from dense_assign.meta_arch.scoring import ClsPowQuality

from .retinanet import model

model.head.quality = "iou"
model.head.quality_tower = "box"
model.loss.quality = "iou"
model.loss.iou_target_grad = True
model.loss.quality_weight = 1.0
model.test_score_fn = L(ClsPowQuality)(alpha=0.5)

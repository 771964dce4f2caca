# ATSS, official recipe = RetinaNet (#A=1) + ATSS (docs/methods.md, "ATSS"; ATSS paper Sec. 3-4):
# one square anchor of 8 * stride per location centred at (k + 0.5) * stride, deltas with weights
# (10, 10, 5, 5), GIoU on decoded boxes weighted by the centerness target / its sum, x 2.0,
# centerness on the box tower, GN head with Scale, all-reduced #pos normalizer; at test, threshold the
# raw class score at 0.05 and report sqrt(cls x ctr), NMS 0.6.
from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform

from dense_assign.assigners import ATSSAssigner

from .fcos import model

model.prior_generator = L(DefaultAnchorGenerator)(
    sizes=[[64], [128], [256], [512], [1024]],  # 8 * stride (ATSS paper Sec. 4.1, anchor scale 8)
    aspect_ratios=[1.0],
    strides=[8, 16, 32, 64, 128],
    offset=0.5,  # ATSS's anchor generator centres anchors at (k + 0.5) * stride
)
model.box2box_transform = L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0])
model.assigner = L(ATSSAssigner)(num_classes="${..num_classes}", topk=9)  # k = 9 (Sec. 3.2)
model.loss.box_weight = 2.0  # REG_LOSS_WEIGHT (official atss_R_50_FPN_1x.yaml)

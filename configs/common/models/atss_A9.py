# RetinaNet (#A=9) + ATSS: 3 scales x 3 aspect ratios per location (RetinaNet's anchors of
# 4 * stride x {2^0, 2^(1/3), 2^(2/3)} x {0.5, 1, 2}); k = 9 x A = 81 candidates a level (official
# TOPK * num_anchors). The ATSS slides show it matches #A=1.
from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from .atss import model

model.prior_generator = L(DefaultAnchorGenerator)(
    sizes=[[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]],
    aspect_ratios=[0.5, 1.0, 2.0],
    strides=[8, 16, 32, 64, 128],
    offset=0.5,
)
model.head.num_anchors = 9

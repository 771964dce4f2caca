# RetinaNet (Lin et al., ICCV 2017) as detectron2's LazyConfig model: 9 anchors per location
# (3 scales x 3 aspect ratios, Sec. 4), anchor centres at k * stride (offset 0), max-IoU assignment
# 0.4 / 0.5 with low-quality matches, deltas with weights (1, 1, 1, 1), smooth-L1 with beta 0 (L1),
# focal loss 0.25 / 2, detectron2's EMA normalizer (init 100), no norm in the head, NMS 0.5.
from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform

from dense_assign.assigners import MaxIoUAssigner

from .fcos import model

model.backbone.top_block.in_feature = "res5"  # RetinaNet: P6 from C5 (Sec. 4)
model.backbone.top_block.in_channels = 2048
model.head.num_anchors = 9
model.head.norm = ""
model.head.quality = "none"
model.head.use_scale = False
model.prior_generator = L(DefaultAnchorGenerator)(
    sizes=[[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]],
    aspect_ratios=[0.5, 1.0, 2.0],
    strides=[8, 16, 32, 64, 128],
    offset=0.0,
)
model.box2box_transform = L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0])
model.assigner = L(MaxIoUAssigner)(
    num_classes="${..num_classes}", thresholds=[0.4, 0.5], allow_low_quality_matches=True
)
model.loss.box_loss = "smooth_l1"
model.loss.smooth_l1_beta = 0.0
model.loss.box_weighting = "none"
model.loss.quality = "none"
model.loss.normalizer = "ema"
model.loss.ema_init = 100.0
model.test_score_fn = "cls"
model.test_score_thresh = 0.05
model.test_nms_thresh = 0.5

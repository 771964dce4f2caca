# PAA (Kim & Lee, ECCV 2020; docs/methods.md, "PAA") as mmdetection's paa_r50_fpn_1x: the ATSS
# model (configs/common/models/atss.py: R-50 FPN P3-P7 with P6 from P5, GN head with Scale, 4 convs
# a tower) with one square anchor of 8 * stride per location centred at k * stride (mmdetection's
# AnchorGenerator: octave_base_scale 8, ratio 1, offset 0), deltas with weights (10, 10, 5, 5); the
# PAA assigner; focal loss, GIoU x 1.3 on decoded boxes weighted by the IoU of the predicted box
# and divided by the IoUs' sum; an IoU branch on the box tower trained with BCE x 0.5 towards the
# (detached) IoU of the positives; test score sqrt(cls x IoU), threshold 0.05, NMS 0.6, score
# voting.
from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform

from dense_assign.assigners import PAAAssigner
from dense_assign.meta_arch.box_voting import BoxVoting

from .atss import model

model.prior_generator = L(DefaultAnchorGenerator)(
    sizes=[[64], [128], [256], [512], [1024]],  # octave_base_scale 8 x stride, one scale
    aspect_ratios=[1.0],  # ratios [1.0]: one anchor per location (as the paper)
    strides=[8, 16, 32, 64, 128],
    offset=0.0,  # mmdetection's anchors are centred at k * stride
)
model.box2box_transform = L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0])  # stds .1 .1 .2 .2
model.assigner = L(PAAAssigner)(
    num_classes="${..num_classes}",
    topk=9,  # candidates per GT and level (mmdetection topk=9; official MODEL.PAA.TOPK)
    iou_threshold=0.1,  # initial MaxIoUAssigner(pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0)
    box_weight=1.3,  # score = focal + 1.3 x GIoU (mmdetection's get_pos_loss)
    iou_targets=True,  # the positives' predicted-box IoU, for the IoU-weighted box loss below
    box2box_transform="${..box2box_transform}",  # decode as the model does
)
model.head.quality = "iou"  # the IoU prediction branch of the paper ...
model.head.quality_tower = "box"  # ... on the box tower, as ATSS's centerness
model.loss.box_loss = "giou"
model.loss.box_weight = 1.3  # GIoULoss(loss_weight=1.3)
model.loss.box_weighting = "cls_target"  # GIoU x IoU target / sum of IoU targets (both codes)
model.loss.use_cls_targets = False  # the class channels train towards 1: the IoU only weighs boxes
model.loss.quality = "iou"
model.loss.iou_target_grad = False  # the IoU target of the branch is detached (both codes)
model.loss.quality_weight = 0.5  # loss_centerness: sigmoid CrossEntropyLoss, loss_weight=0.5
model.loss.normalizer = "num_pos"
model.test_score_fn = "sqrt_cls_quality"  # sqrt(cls x IoU), thresholded and ranked (mmdetection)
model.test_score_thresh = 0.05  # test_cfg: score_thr 0.05, nms_pre 1000, NMS 0.6, 100 detections
model.test_topk_candidates = 1000
model.test_nms_thresh = 0.6
model.max_detections_per_image = 100
model.test_box_voting = L(BoxVoting)(sigma=0.025)  # score voting (mmdetection score_voting=True)

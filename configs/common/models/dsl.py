# Dynamic soft label assignment (RTMDet, Lyu et al. 2022, arXiv:2212.07784; the facts:
# docs/methods.md, "SimOTA and dynamic soft labels") on the FCOS model
# (configs/common/models/fcos.py: R-50 FPN P3-P7, GN head with Scale, points regressing (l, t, r, b)
# / stride) without centerness: candidates inside the box, cost = soft-label class cost + 3 x -log
# IoU + the centre prior 10^(d / stride - 3), dynamic k from the 13 largest IoUs, the matched
# prediction's IoU as the soft class target (quality focal loss), GIoU weighted by that target.
# RTMDet's CSPNeXt / PAFPN / shared-BN head and 300-epoch recipe are not reproduced
# (projects/DynamicSoftLabel/README.md, "Differences").
from detectron2.config import LazyCall as L

from dense_assign.assigners import DynamicSoftLabelAssigner
from dense_assign.meta_arch import point_prior_generator

from .fcos import model

# points at k * stride, no half-stride offset (RTMDet's MlvlPointGenerator(offset=0))
model.prior_generator = L(point_prior_generator)(strides=[8, 16, 32, 64, 128], offset=0.0)
model.assigner = L(DynamicSoftLabelAssigner)(
    num_classes="${..num_classes}",
    soft_center_radius=3.0,  # centre prior 10^(d / stride - 3.0)
    topk=13,  # dynamic k = int(sum of the 13 largest IoUs), at least 1 (RTMDet configs)
    iou_weight=3.0,  # cost = soft class cost + 3.0 x -log(IoU + 1e-7) + centre prior
    box2box_transform="${..box2box_transform}",  # decode as the model does
)
model.head.quality = "none"  # no objectness / centerness (RTMDet with_objectness=False)
# (l, t, r, b) of 1 stride at start, as RTMDet-l's exp(0) x stride: boxes that overlap their GT,
# so the IoU targets (and the box loss weighted by them) are not all 0 at the first iterations
model.head.bbox_reg_bias = 1.0
model.loss.cls_loss = "quality_focal"  # QualityFocalLoss, beta 2.0, weight 1.0 (RTMDet)
model.loss.qfl_beta = 2.0
model.loss.box_loss = "giou"
model.loss.box_weighting = "cls_target"  # GIoU x the soft target / its sum (RTMDet)
model.loss.box_weight = 2.0  # GIoULoss loss_weight=2.0 (RTMDet)
# both losses divided by the sum of the soft targets (at least 1), as RTMDet's avg_factor
model.loss.normalizer = "cls_target_sum"
model.loss.quality = "none"
model.test_score_fn = "cls"
model.test_score_thresh = 0.001  # RTMDet test score_thr
model.test_nms_thresh = 0.65  # RTMDet NMS iou_threshold

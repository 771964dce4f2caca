# SAPD, Soft Anchor-Point Detector (Zhu et al., ECCV 2020; dense_assign/assigners/sapd.py): the
# RetinaNet model (configs/common/models/retinanet.py: R-50 FPN P3-P7 with P6 from C5, focal loss
# 0.25 / 2; here with GroupNorm in the head) as an anchor-point detector: one point per location
# at (k + 0.5) * stride regressing (l, t, r, b) / (z * stride), positives in the eps-shrunk box on
# every level with soft point weights (Eq. 4) and soft level weights from a feature selection net
# (Eq. 5), focal + IoU loss normalized by the sum of the positive weights (Eq. 6), score = class
# probability.
from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransformLinear

from dense_assign.assigners import SAPDAssigner
from dense_assign.meta_arch import point_prior_generator

from .retinanet import model

# points at (k + 0.5) * s (Sec. 3.1) with prior boxes of z * s, z = 4 (Eq. 1, Sec. 3.4), so the
# linear transform divides (l, t, r, b) by 4 * stride
model.prior_generator = L(point_prior_generator)(
    strides=[8, 16, 32, 64, 128], offset=0.5, scale=4.0
)
model.box2box_transform = L(Box2BoxTransformLinear)(normalize_by_size=True)
model.head.num_anchors = 1
model.head.conv_dims = [256, 256, 256, 256]  # 4 tower convs + the 3x3 output conv (Sec. 3.1)
# GroupNorm in the towers. The paper names no normalization; FCOS's 4-conv GN tower is this
# project's choice (docs/methods.md, "SAPD"), and without GN the towers die here: on the synthetic
# recipe the unnormalized head's classification ReLUs were 0% active after the phase switch (every
# score 0.014, no detection; projects/SAPD/README.md "Why GroupNorm"). model.head.norm="" gives
# RetinaNet's plain head.
model.head.norm = "GN"
model.head.use_scale = False  # no learnable Scale: targets are already divided by z * stride
model.head.quality = "none"  # no quality branch (Sec. 3.1, Fig. 2)
model.head.prior_prob = 0.01  # class bias -log((1 - pi) / pi), pi = 0.01 (Sec. 3.4)
model.head.bbox_reg_bias = 0.1  # localization bias 0.1 (Sec. 3.4)
model.assigner = L(SAPDAssigner)(
    num_classes="${..num_classes}",
    shrink_factor=0.2,  # eps (Sec. 3.1 / 3.4)
    soft_point_weights=True,  # soft-weighted anchor points (Sec. 3.2, Table 2 "SW")
    eta=1.0,  # steepness of f (Eq. 4), best in Table 3
    soft_levels=True,  # soft-selected pyramid levels (Sec. 3.3, Table 2 "SS")
    topk=3,  # levels per instance in phase two (Table 4)
    topk_by="loss",  # the k minimal-loss levels (Sec. 3.3)
    renormalize_topk=False,  # probabilities as they are (paper silent; gogo Keras code)
    fsn_loss_weight=0.1,  # lambda (Eq. 6, Sec. 3.4)
    fsn_in_channels="${..backbone.out_channels}",  # 5 x 256 = 1280 input channels (Table 1)
    num_levels=5,  # P3-P7 (Sec. 3.1, Table 1)
    # phase one (one-hot min-loss level) for the first half of training (Sec. 3.4); follows
    # train.max_iter (command-line overrides included) when the model sits in a full config
    max_iter="${oc.select:...train.max_iter,null}",
    switch_fraction=0.5,
    focal_alpha="${..loss.focal_alpha}",  # the instance loss is the detection loss (FSAF)
    focal_gamma="${..loss.focal_gamma}",
    box2box_transform="${..box2box_transform}",
)
model.loss.box_loss = "iou"  # IoU loss (Eq. 2, UnitBox [30])
model.loss.box_weighting = "none"
model.loss.quality = "none"
model.loss.normalizer = "num_pos"  # sum of the positives' weights (Eq. 6), not an EMA
model.test_score_fn = "cls"  # class probability (Sec. 3.4, Inference)
model.test_score_thresh = 0.05  # Sec. 3.4
model.test_topk_candidates = 1000  # per level (Sec. 3.4)
model.test_nms_thresh = 0.5  # Sec. 3.4
model.max_detections_per_image = 100

# AutoAssign (Zhu et al. 2020, arXiv:2007.03496; official recipe: docs/methods.md, "AutoAssign"):
# the FCOS model (configs/common/models/fcos.py: R-50 FPN P3-P7 with P6/P7 from P5, GN head with
# Scale, points regressing (l, t, r, b) / stride) with points at k * stride, every point inside a
# GT on every level as a candidate, prediction-aware weights (learnable center prior x
# confidence) and bag losses, implicit objectness on the box tower, score cls x obj.
from detectron2.config import LazyCall as L

from dense_assign.assigners import AutoAssign
from dense_assign.losses import AutoAssignLoss
from dense_assign.meta_arch import point_prior_generator

from .fcos import model

# points at k * stride, no half-stride offset (cvpods SHIFT_GENERATOR.OFFSET 0; docs/methods.md,
# "AutoAssign")
model.prior_generator = L(point_prior_generator)(strides=[8, 16, 32, 64, 128], offset=0.0)
model.assigner = L(AutoAssign)(
    num_classes="${..num_classes}",
    center_prior="per_category",  # category-wise learnable mu, sigma (Sec. 3.2, Table 3)
    confidence="joint",  # C = exp(P(cls) P(loc) / tau) (Sec. 3.3, Table 4)
    objectness="implicit",  # ImpObj: P(cls) = P(cls|obj) P(obj) (Sec. 3.3.1, Eq. 3)
    loc_weight=5.0,  # lambda of Eq. 4 (Sec. 4.1)
    temperature=1.0 / 3,  # tau of Eq. 9 (Sec. 4.1)
    fallback_topk=9,  # GT without inside point: 9 nearest points (mmdet force_topk; not in paper)
    box2box_transform="${..box2box_transform}",  # decode as the model does
)
model.loss = L(AutoAssignLoss)(
    num_classes="${..num_classes}",
    objectness="${..assigner.objectness}",
    pos_loss_weight=0.25,  # focal alpha 0.25 (Sec. 4.1) on the positive bags (official code)
    neg_loss_weight=0.75,  # 1 - alpha on the negatives (official code)
    center_loss_weight=0.75,  # center-prior term #GT / sum G (official code, not in the paper)
    neg_gamma=2.0,  # focal gamma 2.0 on the negatives (Sec. 4.1)
)
model.head.prior_prob = 0.02  # official PRIOR_PROB = 0.02 (docs/methods.md, "AutoAssign")
model.head.quality = "objectness"  # ImpObj shares the box tower (Sec. 3.3.1, Fig. 3)
model.head.quality_tower = "box"
model.head.bbox_reg_bias = 4.0  # official bbox_pred bias 4.0 (docs/methods.md, "AutoAssign")
model.test_score_fn = "cls_quality"  # cls x obj, no sqrt (official; docs/methods.md, "AutoAssign")
model.test_score_thresh = 0.05  # official SCORE_THRESH_TEST (docs/methods.md, "AutoAssign")
model.test_topk_candidates = 1000  # TOPK_CANDIDATES_TEST, per level (docs/methods.md, "AutoAssign")
model.test_nms_thresh = 0.6  # NMS 0.6 (Sec. 4.1)
model.max_detections_per_image = 100  # official (docs/methods.md, "AutoAssign")

# OTA (Ge et al., CVPR 2021; the facts: docs/methods.md, "OTA") on the FCOS model (fcos.py) as the
# official cvpods code: an IoU branch in place of centerness, the optimal transport assignment, hard
# one-hot focal loss, GIoU x 2 weighted by the positives' IoU, IoU-branch BCE x 0.5
# (projects/OTA/README.md).
from detectron2.config import LazyCall as L

from dense_assign.assigners import OTAAssigner

from .fcos import model

model.prior_generator.offset = 0.0  # cvpods' shift generator OFFSET 0.0: points at k x stride
model.assigner = L(OTAAssigner)(
    num_classes="${..num_classes}",
    center_radius=2.5,  # centre region of 2.5 strides (get_ground_truth)
    top_candidates=20,  # OTA.TOP_CANDIDATES: k = int(sum of the 20 largest IoUs), at least 1
    reg_weight=1.5,  # OTA.REG_WEIGHT: cost = focal + 1.5 x -log IoU
    sinkhorn_eps=0.1,  # OTA.SINKHORN_EPS
    sinkhorn_iters=50,  # OTA.SINKHORN_ITER
    focal_alpha="${..loss.focal_alpha}",  # the cost's focal loss is the model's
    focal_gamma="${..loss.focal_gamma}",
    box2box_transform="${..box2box_transform}",  # decode as the model does
)
model.head.quality = "iou"  # ious_pred: one conv on the box tower, as centerness was
model.loss.use_cls_targets = False  # positives train towards their hard one-hot class
model.loss.box_weighting = "cls_target"  # GIoU x IoU of the assigned prediction / sum of IoUs
model.loss.box_weight = 2.0  # official loss_box_reg = 2.0 x GIoU
model.loss.quality = "iou"  # BCE of the IoU branch towards that IoU
model.loss.iou_target_grad = False  # the target is computed under no_grad
model.loss.quality_weight = 0.5  # official loss_centerness (the IoU branch) = 0.5 x BCE
model.test_score_fn = "sqrt_cls_quality"  # sqrt(cls x IoU), thresholded as the product

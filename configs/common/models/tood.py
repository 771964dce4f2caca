# TOOD's task alignment learning (Feng et al., ICCV 2021; docs/methods.md, "TOOD task-aligned
# assignment") on the FCOS + ATSS model (configs/common/models/atss_fcos.py: points at
# (k + 0.5) * stride regressing (l, t, r, b) / stride, GN head with Scale). TOOD's T-head is out of
# scope: the existing head, without a quality branch. ATSS (k = 9, through 8 * stride squares)
# for the first 4 of 12 epochs, then the task-aligned assigner (top 13 by t = s^1 u^6 among the
# points inside the GT); quality focal loss towards t_hat, GIoU x 2.0 weighted by t_hat.
from detectron2.config import LazyCall as L

from dense_assign.assigners import ATSSAssigner, PhasedAssigner, TaskAlignedAssigner

from .atss_fcos import model

model.assigner = L(PhasedAssigner)(
    num_classes="${..num_classes}",
    phases=[
        # warm-up: ATSS, topk 9, on 8 * stride anchors (official initial_assigner)
        L(ATSSAssigner)(num_classes="${....num_classes}", topk=9, anchor_scale=8.0),
        L(TaskAlignedAssigner)(
            num_classes="${....num_classes}",
            topk=13,  # m = 13 (Sec. 3.2; official topk)
            alpha=1.0,  # t = s^alpha u^beta, alpha = 1, beta = 6 (Sec. 3.2; official)
            beta=6.0,
            topk_over="inside",  # top 13 inside the GT; "all": mmdetection's order
            box2box_transform="${....box2box_transform}",  # decode as the model does
        ),
    ],
    switch_fractions=[4 / 12],  # TAL from epoch 4 of 12 (official initial_epoch=4)
    max_iter="${oc.select:...train.max_iter,null}",  # follows train.max_iter
    fill_cls_targets=1.0,  # warm-up positives train towards 1 (hard labels, as TOOD's warm-up)
)
model.head.quality = "none"  # TOOD has no centerness / IoU branch
model.loss.cls_loss = "quality_focal"  # QFL, beta 2, towards t_hat (official loss_cls)
model.loss.qfl_beta = 2.0
model.loss.box_weighting = "cls_target"  # GIoU weighted by t_hat (official TOOD head)
model.loss.box_weight = 2.0  # official GIoULoss loss_weight = 2.0
# both losses divided by the sum of the soft targets (at least 1), as the official head's avg_factor
model.loss.normalizer = "cls_target_sum"
model.loss.quality = "none"
model.test_score_fn = "cls"  # the class probability (no quality branch)
model.test_score_thresh = 0.05  # official test_cfg: score_thr 0.05, NMS 0.6, 100 detections
model.test_nms_thresh = 0.6
model.max_detections_per_image = 100

# SimOTA (YOLOX, Ge et al. 2021, arXiv:2107.08430; the facts: docs/methods.md, "SimOTA and dynamic
# soft labels") on the FCOS model (configs/common/models/fcos.py: R-50 FPN P3-P7, GN head with
# Scale, points at (k + 0.5) * stride regressing (l, t, r, b) / stride) without centerness:
# candidates inside the box or within 2.5 strides of its centre, cost = class BCE + 3 x -log IoU
# (+1e5 outside box and centre), dynamic k from the 10 largest IoUs, the matched prediction's IoU as
# the soft class target (GFL's quality focal loss), GIoU box loss. YOLOX's own head, objectness, IoU
# loss and 300-epoch recipe are not reproduced (projects/SimOTA/README.md, "Differences").
from detectron2.config import LazyCall as L

from dense_assign.assigners import SimOTAAssigner

from .fcos import model

model.assigner = L(SimOTAAssigner)(
    num_classes="${..num_classes}",
    center_radius=2.5,  # YOLOX center_radius (in strides)
    candidate_topk=10,  # dynamic k = int(sum of the 10 largest IoUs), at least 1
    iou_weight=3.0,  # cost = cls + 3.0 x -log(IoU + 1e-8) (+ 1e5 outside box and centre)
    cls_weight=1.0,
    objectness=False,  # no objectness branch: the class probability alone
    box2box_transform="${..box2box_transform}",  # decode as the model does
)
model.head.quality = "none"  # the class score is the joint score (trained towards the IoU)
model.head.bbox_reg_bias = 0.5  # boxes of 1 stride at start, as YOLOX's exp(0) x stride sizes
model.loss.cls_loss = "quality_focal"  # positives' class channel towards their IoU (GFL, beta 2)
model.loss.qfl_beta = 2.0
model.loss.box_loss = "giou"
model.loss.box_weighting = "none"
model.loss.box_weight = 2.0  # GFL's / RTMDet's GIoU weight next to the quality focal loss
model.loss.quality = "none"
model.test_score_fn = "cls"
model.test_score_thresh = 0.01  # YOLOX test confidence threshold
model.test_nms_thresh = 0.65  # YOLOX NMS threshold

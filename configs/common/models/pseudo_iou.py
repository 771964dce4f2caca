# Pseudo-IoU (Li et al., CVPRW 2021), the full model of Table 3 (Pseudo-IoU + GIoU + centerness), as
# the official code (docs/methods.md, "Pseudo-IoU"): FCOS inside-box positives with scale ranges
# and no center sampling, filtered by Pseudo-IoU > 0.4; GIoU weighted by the centerness target /
# its sum; centerness on the box tower; at test, threshold the raw class score at 0.05, multiply by
# the centerness (no sqrt), NMS 0.5.
from detectron2.config import LazyCall as L

from dense_assign.assigners import PseudoIoUAssigner

from .fcos import model

model.assigner = L(PseudoIoUAssigner)(num_classes="${..num_classes}", threshold=0.4, metric="piou")
model.test_score_fn = "cls_quality_gated"
model.test_nms_thresh = 0.5  # Sec. 4.1

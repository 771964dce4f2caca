# FCOS exactly as detectron2's own FCOS (detectron2/modeling/meta_arch/fcos.py and
# configs/common/models/fcos.py): EMA loss normalizer (init 300), GIoU not weighted by centerness,
# no Scale layers, strict scale-range bounds, score sqrt(cls x ctr) thresholded at 0.2.
# tests/meta_arch/test_detectron2_parity.py checks that its losses equal detectron2's on a fixed batch.
from .fcos import model

model.head.use_scale = False
model.assigner.inclusive_ranges = False
model.loss.box_weighting = "none"
model.loss.normalizer = "ema"
model.loss.ema_init = 300.0
model.test_score_fn = "sqrt_cls_quality"
model.test_score_thresh = 0.2

# FCOS on Pascal VOC 07+12 -> VOC 2007 test: 600 / 1000 px, 12 epochs (12,420 iterations at 16
# images, x0.1 at epochs 8 and 10), warmup 500, LR 0.01, score threshold 0.05 and NMS 0.5 (the
# Pseudo-IoU paper's VOC recipe, Sec. 4.1; it uses R-101: set
# model.backbone.bottom_up.stages.depth=101 for its setting).
from ..common.data.voc import dataloader
from ..common.models.fcos import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_voc_12ep as lr_multiplier
from ..common.train import train

model.num_classes = 20
model.backbone.bottom_up.freeze_at = 2
model.test_nms_thresh = 0.5  # Sec. 4.1
train.max_iter = 12420
train.eval_period = 2070  # every 2 epochs
train.checkpointer.period = 2070
train.output_dir = "./output/voc/fcos_R_50_FPN_voc"

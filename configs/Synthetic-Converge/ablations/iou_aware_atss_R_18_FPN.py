# The IoU branch composes with any assigner: ATSS (#A=1) whose quality branch predicts IoU instead of
# centerness; the two lines that differ from atss_R_18_FPN.py are the quality settings.
from detectron2.config import LazyCall as L

from dense_assign.meta_arch.scoring import ClsPowQuality

from ..atss_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.head.quality = model.loss.quality = "iou"
model.test_score_fn = L(ClsPowQuality)(alpha=0.5)  # cls^a x IoU^(1-a) (Eq. 7)
train.output_dir = "./output/converge/iou_aware_atss_R_18_FPN"

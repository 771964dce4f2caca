# The IoU branch composes with any assigner: ATSS (#A=1) whose quality branch predicts IoU instead of
# centerness; the two lines that differ from atss_R_18_FPN.py are the quality settings.
from ..atss_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.head.quality = model.loss.quality = "iou"
model.test_score_fn = "cls_pow_quality"
train.output_dir = "./output/converge/iou_aware_atss_R_18_FPN"

# Schedules (LR multipliers) used by the configs. 1x = 90k iterations at 16 images, x0.1 at 60k and
# 80k, constant warmup 500 x 1/3 (official FCOS / ATSS; docs/methods.md, "Training recipes").
from detectron2.config import LazyCall as L

from dense_assign.model_zoo import step_schedule

lr_multiplier_1x = L(step_schedule)(max_iter=90000, steps=[60000, 80000])
lr_multiplier_2x = L(step_schedule)(max_iter=180000, steps=[120000, 160000])
# Pascal VOC 07+12 (16,551 images, 16 per batch: 1,035 iterations an epoch), 12 epochs, x0.1 at
# epochs 8 and 10, warmup 500 iterations (Pseudo-IoU paper, Sec. 4.1)
lr_multiplier_voc_12ep = L(step_schedule)(max_iter=12420, steps=[8280, 10350])

# IoU-aware RetinaNet with the IoU target detached (no gradient into the box branch; the paper's rows
# without dagger, Tables 3-4), on the converging CPU benchmark.
from ..iou_aware_retinanet_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.loss.iou_target_grad = False
train.output_dir = "./output/converge/iou_aware_retinanet_detach_R_18_FPN"

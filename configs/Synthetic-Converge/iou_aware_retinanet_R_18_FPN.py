# IoU-aware RetinaNet (configs/common/models/iou_aware_retinanet.py: gradient through the IoU target,
# a = 0.5) on the converging CPU benchmark; compare with retinanet_R_18_FPN.py.
# Alpha sweep, trained model: --eval-only train.init_checkpoint=... model.test_score_fn.alpha=0.4
from ..common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ..common.models.iou_aware_retinanet import model

use_small_model(model)
train.output_dir = "./output/converge/iou_aware_retinanet_R_18_FPN"

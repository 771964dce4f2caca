# IoU-aware RetinaNet (configs/common/models/iou_aware_retinanet.py: gradient through the IoU target,
# a = 0.5) on the synthetic shapes, CPU; compare with retinanet_R_18_FPN.py.
# Alpha sweep, trained model: --eval-only train.init_checkpoint=... model.test_score_fn.alpha=0.4
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.iou_aware_retinanet import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/iou_aware_retinanet_R_18_FPN"

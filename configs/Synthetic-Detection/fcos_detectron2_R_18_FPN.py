# FCOS as detectron2 configures it (EMA normalizer, no centerness weighting, no Scale, score
# threshold 0.2 on sqrt(cls x ctr)), for comparison with the official recipe, on the synthetic shapes.
from ..common.data.synthetic import dataloader
from ..common.models.cpu_backbone import use_resnet18_fpn
from ..common.models.fcos_detectron2 import model
from ..common.synthetic_recipe import lr_multiplier, optimizer, train

use_resnet18_fpn(model)
model.num_classes = 7
train.output_dir = "./output/synthetic/fcos_detectron2_R_18_FPN"

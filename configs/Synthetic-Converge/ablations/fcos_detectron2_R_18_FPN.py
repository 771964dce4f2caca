# FCOS as detectron2 configures it (EMA normalizer, no centerness weighting, no Scale, score
# threshold 0.2 on sqrt(cls x ctr)), for comparison with the official recipe, on the converging CPU benchmark.
from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.fcos_detectron2 import model

use_small_model(model)
train.output_dir = "./output/converge/fcos_detectron2_R_18_FPN"

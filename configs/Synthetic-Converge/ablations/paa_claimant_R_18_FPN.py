# PAA (configs/common/models/paa.py) with mmdetection's low-quality rule in the initial max-IoU step:
# an anchor that is a GT's highest-IoU anchor trains for that GT, not for its own best GT (the
# official code's Matcher, the default). On the converging benchmark's data the default leaves
# about a fifth of the GTs, small ones next to larger ones, without any anchor (projects/PAA).
from ...common.converge_recipe import dataloader, lr_multiplier, optimizer, train, use_small_model
from ...common.models.paa import model

use_small_model(model)
model.assigner.low_quality_gt = "claimant"
train.output_dir = "./output/converge/paa_claimant_R_18_FPN"

# AutoAssign ablation, Table 4, row "P(loc)-only": the confidence weighting C uses P(loc) alone.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.confidence = "loc"
train.output_dir = "./output/converge/autoassign_loc_conf_R_18_FPN"

# AutoAssign ablation, Table 2, "Center" without "Conf": no confidence weighting (C = 1).
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.confidence = "none"
train.output_dir = "./output/converge/autoassign_no_conf_R_18_FPN"

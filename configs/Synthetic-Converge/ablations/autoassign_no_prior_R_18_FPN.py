# AutoAssign ablation, Table 3, row "none" (Table 2 without center weighting): G = 1 on every
# candidate.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.center_prior = "none"
train.output_dir = "./output/converge/autoassign_no_prior_R_18_FPN"

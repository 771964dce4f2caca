# AutoAssign ablation, Table 3, row "fixed": Gaussian center prior with mu 0, sigma 1, not learned.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.center_prior = "fixed"
train.output_dir = "./output/converge/autoassign_fixed_prior_R_18_FPN"

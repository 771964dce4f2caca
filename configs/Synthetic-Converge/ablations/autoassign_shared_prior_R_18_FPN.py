# AutoAssign ablation, Table 3, row "shared": one learnable (mu, sigma) for all categories.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.center_prior = "shared"
train.output_dir = "./output/converge/autoassign_shared_prior_R_18_FPN"

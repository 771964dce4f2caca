# AutoAssign ablation, Table 4, row "no-obj": no implicit-objectness branch; P(cls) alone in the
# weights and the losses, and the class score alone at test.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.objectness = "none"  # the loss follows (model.loss.objectness interpolates it)
model.head.quality = "none"
model.test_score_fn = "cls"
train.output_dir = "./output/converge/autoassign_no_obj_R_18_FPN"

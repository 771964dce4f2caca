# AutoAssign ablation, Table 4, row "P(cls)-only": the confidence weighting C uses P(cls) alone.
from ..autoassign_R_18_FPN import dataloader, lr_multiplier, model, optimizer, train

model.assigner.confidence = "cls"
train.output_dir = "./output/converge/autoassign_cls_conf_R_18_FPN"

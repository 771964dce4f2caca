# AF-baseline of the Pseudo-IoU paper (Table 3 row 2, 33.9 AP): FCOS head without center sampling,
# scale ranges kept, every point inside a GT positive (T = 0), IoU loss, no centerness; the recipe
# of pseudo_iou_R_50_FPN_1x.py so the Table 3 rows differ only in the model.
from ..common.models.af_baseline import model
from .pseudo_iou_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.freeze_at = 2
train.output_dir = "./output/coco/af_baseline_R_50_FPN_1x"

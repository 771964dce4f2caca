# AutoAssign R-101-FPN 2x (180k iterations, x0.1 at 120k, 160k) with multi-scale training 640-800,
# the setting of the paper's test-dev comparison (Sec. 4.3, Table 6: 44.5 AP on test-dev).
#   python train_net.py --num-gpus 8 \
#       --config-file configs/COCO-Detection/autoassign_R_101_FPN_2x_ms.py
from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.autoassign import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_2x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.freeze_at = 2
dataloader.train.mapper.augmentations = coco_multiscale_train  # multi-scale training (Table 6)
train.max_iter = 180000  # 2x (Sec. 4.3)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/coco/autoassign_R_101_FPN_2x_ms"

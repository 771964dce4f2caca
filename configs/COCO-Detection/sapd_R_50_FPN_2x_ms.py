# SAPD R-50-FPN 2x with multi-scale training (Sec. 4.2): shorter side 640-800, twice the 1x epochs
# (180k iterations, LR steps scaled to 120k, 160k); phase two from iteration 90k.
# Paper: 41.7 AP on test-dev (Table 6, R-50).
#   python train_net.py --config-file configs/COCO-Detection/sapd_R_50_FPN_2x_ms.py --num-gpus 8
from ..common.data.coco import coco_multiscale_train, dataloader
from ..common.models.sapd import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_2x as lr_multiplier
from ..common.train import train

model.backbone.bottom_up.freeze_at = 2
dataloader.train.mapper.augmentations = coco_multiscale_train  # scale jitter 640-800 (Sec. 4.2)
train.max_iter = 180000  # 2x (Sec. 4.2); the phase switch follows (90k)
train.output_dir = "./output/coco/sapd_R_50_FPN_2x_ms"

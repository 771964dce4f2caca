"""A tiny FCOS on the ``synthetic_tiny`` dataset, for the train_net.py tests: CPU, seconds per run.

The project's FCOS (OneStageDetector) with a ResNet-18 (trainable BN) + FPN of 32 channels, 128-pixel images,
batch 2, 6 iterations from scratch. ``import dense_assign.data`` (done by train_net.py) registers
``synthetic_tiny_{train,val}``; they are generated under ``$DETECTRON2_DATASETS`` (default
``./datasets``) on first use.
"""

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler
from omegaconf import OmegaConf

from dense_assign.model_zoo import get_config

NUM_CLASSES = 7  # dense_assign.data.SYNTHETIC_CLASSES
CHANNELS = 32
IMAGE_SIZE = 128

# The project's FCOS (configs/common/models/fcos.py, official recipe: OneStageDetector + FCOSAssigner
# + DenseLoss), shrunk to a ResNet-18 FPN of 32 channels with one conv per head tower.
model = get_config("common/models/fcos.py").model
model.backbone.bottom_up.stages.depth = 18
model.backbone.bottom_up.stages.norm = "BN"
model.backbone.bottom_up.stem.norm = "BN"
model.backbone.bottom_up.freeze_at = 0
del model.backbone.bottom_up.stages.stride_in_1x1
model.backbone.out_channels = CHANNELS
model.backbone.top_block.in_channels = CHANNELS
model.head.input_shape = [ShapeSpec(channels=CHANNELS)] * 5
model.head.conv_dims = [CHANNELS]
model.num_classes = NUM_CLASSES
# Low, so that a model trained for a few iterations still has detections to evaluate.
model.test_score_thresh = 0.01
# ImageNet statistics for a model trained from scratch.
model.pixel_std = [57.375, 57.120, 58.395]

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_tiny_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=2 * IMAGE_SIZE),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=2,
    num_workers=0,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_tiny_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=2 * IMAGE_SIZE),
        ],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=0,
)
dataloader.evaluator = L(COCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${...train.output_dir}/inference",
    use_fast_impl=False,  # the fast implementation needs detectron2._C
)

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.1),
    warmup_length=0.3,
    warmup_factor=0.1,
)

train = model_zoo.get_config("common/train.py").train
train.output_dir = "./output/tiny_fcos"
train.init_checkpoint = ""
train.max_iter = 6
train.checkpointer.period = 3
train.eval_period = 6
train.log_period = 1
train.device = "cpu"
train.seed = 0

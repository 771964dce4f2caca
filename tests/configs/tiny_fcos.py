"""A tiny FCOS on the ``synthetic_tiny`` dataset, for the train_net.py tests: CPU, seconds per run.

detectron2's own ``FCOS`` with a ResNet-18 (trainable BN) + FPN of 32 channels, 128-pixel images,
batch 2, 6 iterations from scratch. ``import dense_assign.data`` (done by train_net.py) registers
``synthetic_tiny_{train,val}``; they are generated under ``$DETECTRON2_DATASETS`` (default
``./datasets``) on first use.
"""
from omegaconf import OmegaConf

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
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

NUM_CLASSES = 7  # dense_assign.data.SYNTHETIC_CLASSES
CHANNELS = 32
IMAGE_SIZE = 128

model = L(FCOS)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
            stages=L(ResNet.make_default_stages)(depth=18, norm="BN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=0,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=CHANNELS,
        top_block=L(LastLevelP6P7)(in_channels=CHANNELS, out_channels=CHANNELS, in_feature="p5"),
    ),
    head=L(FCOSHead)(
        input_shape=[ShapeSpec(channels=CHANNELS)] * 5,
        conv_dims=[CHANNELS],
        num_classes="${..num_classes}",
        norm="GN",
        prior_prob=0.01,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    num_classes=NUM_CLASSES,
    # Low, so that a model trained for a few iterations still has detections to evaluate.
    test_score_thresh=0.01,
    # BGR (DatasetMapper's default image_format), ImageNet statistics.
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[57.375, 57.120, 58.395],
)

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

# COCO 2017 detection (detectron2 builtin names; images and annotations under
# $DETECTRON2_DATASETS/coco). Single-scale 800 / 1333 training with flips, the recipe of the
# official FCOS / ATSS / AutoAssign 1x numbers (docs/methods.md, "Training recipes");
# `coco_multiscale_train` below is the 640-800 multi-scale recipe of the 2x and Pseudo-IoU R-101
# models.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOEvaluator
from omegaconf import OmegaConf

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=16,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)
# use_fast_impl needs detectron2's C++ ops, which the registry build lacks; the python COCOeval gives
# the same numbers, more slowly.
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", use_fast_impl=False)

coco_multiscale_train = [
    L(T.ResizeShortestEdge)(
        short_edge_length=(640, 672, 704, 736, 768, 800), max_size=1333, sample_style="choice"
    ),
    L(T.RandomFlip)(horizontal=True),
]

# The built-in synthetic shapes dataset (dense_assign.data.synthetic; generated on first use under
# $DETECTRON2_DATASETS, default ./datasets). Small images and a small batch so a CPU trains it.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.evaluation import COCOEvaluator

import dense_assign.data  # noqa: F401  (registers synthetic_shapes_{train,val} and variants)

from .coco import dataloader

dataloader.train.dataset.names = "synthetic_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(256, 288, 320), max_size=480, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 2
dataloader.test.dataset.names = "synthetic_shapes_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=320, max_size=480)
]
dataloader.test.num_workers = 2
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", use_fast_impl=False)

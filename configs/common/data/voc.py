# Pascal VOC 07+12 detection (detectron2 builtin names; $DETECTRON2_DATASETS/VOC2007, VOC2012):
# train on voc_2007_trainval + voc_2012_trainval, test on voc_2007_test, shorter side 600, longer
# at most 1000, flips only (Pseudo-IoU paper Sec. 4.1). detectron2's VOC evaluator reports AP50
# (the VOC mAP) and COCO-style AP / AP75.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.evaluation import PascalVOCDetectionEvaluator

from .coco import dataloader

dataloader.train.dataset.names = ["voc_2007_trainval", "voc_2012_trainval"]
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.dataset.names = "voc_2007_test"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000)
]
dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="${..test.dataset.names}")

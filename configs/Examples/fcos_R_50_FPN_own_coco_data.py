# FCOS on your own COCO-format dataset (README "Train on your own data"). Copy this file next to it
# (configs/Examples/), change the marked lines, and train:
#   MY_DATA=/path/to/my_data python train_net.py --config-file configs/Examples/THIS_FILE.py
# Any other method: import its model from ..common.models (atss, autoassign, sapd, pseudo_iou, ...)
# instead of fcos, or set model.assigner on the command line.
import os

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data.datasets import register_coco_instances

from dense_assign.model_zoo import step_schedule_fractions

from ..common.data.coco import dataloader
from ..common.models.fcos import model
from ..common.optim import SGD as optimizer
from ..common.train import train

# 1. The data: one COCO json and one image folder per split (here under $MY_DATA). train_net.py
#    loads a config file once per process, so registering here needs no "already registered" guard.
DATA = os.environ.get("MY_DATA", "datasets/my_data")
register_coco_instances("my_train", {}, f"{DATA}/train.json", f"{DATA}/images")
register_coco_instances("my_val", {}, f"{DATA}/val.json", f"{DATA}/images")
dataloader.train.dataset.names = "my_train"
dataloader.test.dataset.names = "my_val"

# 2. The classes: as many as the json's "categories" (checked against the data before training).
model.num_classes = 3

# 3. Image sizes: the shorter side is resized to one of these for training (multi-scale), to the
#    last for testing, and the longer side kept under max_size. COCO uses 800 / 1333.
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(480, 512, 544), max_size=800, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=544, max_size=800)
]
dataloader.train.total_batch_size = 8  # over all GPUs; scale optimizer.lr with it (0.01 for 16)
optimizer.lr = 0.005

# 4. The schedule: iterations for the size of the data; the LR drops x0.1 at 2/3 and 8/9 of them
#    (the 1x recipe's places; they move with train.max_iter=... on the command line), after a
#    500-iteration warmup. Evaluation and checkpoints every eval_period. The ImageNet R-50 weights
#    come from detectron2's model zoo (train.init_checkpoint, downloaded once).
train.max_iter = 6000
lr_multiplier = L(step_schedule_fractions)(max_iter="${..train.max_iter}")
train.eval_period = 1000
train.checkpointer.period = 1000
train.output_dir = "./output/my_data/fcos_R_50_FPN"

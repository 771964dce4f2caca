"""tests/configs/tiny_fcos.py made batch-independent, for the multi-process equivalence tests:
GroupNorm instead of BatchNorm in the backbone (BatchNorm statistics depend on how the batch is
split over processes) and every image resized to 128 x 192 (so that images are padded alike
whether they are in one batch or in two)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .tiny_fcos import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.norm = "GN"
model.backbone.bottom_up.stem.norm = "GN"
dataloader.train.mapper.augmentations = [
    L(T.Resize)(shape=(128, 192)),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(128, 192))]
train.output_dir = "./output/tiny_fcos_ddp"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

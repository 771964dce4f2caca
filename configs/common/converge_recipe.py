# The converging CPU benchmark (README "The converging CPU benchmark"): one recipe for every config
# of configs/Synthetic-Converge, so their numbers compare. The choices and why are in the README.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from dense_assign.model_zoo import cosine_schedule

from .data.synthetic import dataloader
from .models.cpu_backbone import use_resnet18_fpn
from .synthetic_recipe import optimizer, train

dataloader.train.dataset.names = "synthetic_small_train"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "synthetic_small_val"
dataloader.test.mapper.augmentations = []
dataloader.test.num_workers = 1

optimizer.lr = 2e-3
optimizer.foreach = True  # one fused update for all parameters: a few % of a CPU step

train.max_iter = 1000
train.eval_period = 500  # AP at half and at the end: the learning curve of every run
train.checkpointer.period = 500
train.log_period = 20

lr_multiplier = L(cosine_schedule)(
    max_iter="${..train.max_iter}", warmup_iters=100, warmup_factor=0.01
)


def use_small_model(model, num_classes=4, width=16, channels=64, tower_depth=2):
    """The benchmark's model: a ResNet-18 of res2 width ``width`` (16: a quarter of ResNet-18's) with
    BatchNorm, from scratch, an FPN of ``channels`` and ``tower_depth`` convs per head tower."""
    use_resnet18_fpn(model, channels=channels, tower_depth=tower_depth, width=width)
    model.num_classes = num_classes
    return model

# Training recipe of the synthetic CPU configs: from scratch, 8 images per batch, SGD 0.02 with a
# linear warmup, x0.1 at 80% of training; evaluation at the end. Every Synthetic-Detection config
# uses it, so their numbers compare.
from detectron2.config import LazyCall as L

from dense_assign.model_zoo import step_schedule_fractions

from .optim import SGD as optimizer
from .train import train

optimizer.lr = 0.02

train.max_iter = 1500
train.eval_period = 0  # evaluate once, at the end
train.checkpointer.period = 250
train.checkpointer.max_to_keep = 2
train.log_period = 20
train.init_checkpoint = ""  # from scratch
train.device = "cpu"
train.vis_predictions = 4  # prediction images written to <output_dir>/predictions at the end

lr_multiplier = L(step_schedule_fractions)(
    max_iter="${..train.max_iter}",
    fractions=[0.8],
    warmup_iters=100,
    warmup_factor=0.001,
    warmup_method="linear",
)

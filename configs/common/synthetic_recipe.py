# Training recipe of the synthetic CPU configs: from scratch, so a fast-converging optimizer
# (AdamW, LR 2e-3, linear warmup, x0.1 at 80%) instead of the papers' SGD, which needs ImageNet
# initialization and 90k iterations; 4 images a batch. Every Synthetic-Detection config uses it, so
# their numbers compare.
import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from dense_assign.model_zoo import step_schedule_fractions

from .train import train

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=2e-3,
    weight_decay=1e-4,
)

train.max_iter = 600
train.eval_period = 0  # evaluate once, at the end
train.checkpointer.period = 200
train.checkpointer.max_to_keep = 2
train.log_period = 20
train.init_checkpoint = ""  # from scratch
train.device = "cpu"
train.vis_predictions = 4  # prediction images written to <output_dir>/predictions at the end

lr_multiplier = L(step_schedule_fractions)(
    max_iter="${..train.max_iter}",
    fractions=[0.8],
    warmup_iters=50,
    warmup_factor=0.01,
    warmup_method="linear",
)

# SGD of the official FCOS / ATSS / Pseudo-IoU recipes: LR 0.01 at 16 images, momentum 0.9,
# weight decay 1e-4, bias LR x2 and no weight decay on biases (FCOS defaults.py), none on norms.
import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}", weight_decay_norm=0.0, bias_lr_factor=2.0, weight_decay_bias=0.0
    ),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
)

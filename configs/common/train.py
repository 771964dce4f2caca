# Training-loop settings: detectron2's common/train.py, with this project's defaults.
from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.max_iter = 90000
train.eval_period = 5000
train.checkpointer.period = 5000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.device = "cuda"
# Gradient clipping before each optimizer step (after AMP unscaling), off by default
# (dense_assign.engine.config.CLIP_GRAD_DEFAULTS): "norm" limits the global gradient norm to
# clip_value (35 in mmdetection's FCOS config), "value" clamps each gradient element.
train.clip_grad = dict(enabled=False, clip_type="norm", clip_value=35.0, norm_type=2.0)

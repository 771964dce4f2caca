# Training-loop settings: detectron2's common/train.py, with this project's defaults.
from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.max_iter = 90000
train.eval_period = 5000
train.checkpointer.period = 5000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.device = "cuda"

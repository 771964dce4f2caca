"""Every shipped config: loads, instantiates, trains one step and runs inference on 2 tiny images.

The models are shrunk to a thin ResNet-18 FPN (``helpers.shrink_model``: the config's assigner,
loss, head options, priors and scoring stay as they are), so that the 70-odd configs take seconds;
one full-size model per backbone (R-18, R-50, R-101, X-101) is built as the config says.
"""

import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401

from ..helpers import REPO, random_batch, shrink_model

CONFIGS = sorted(
    os.path.relpath(p, REPO)
    for folder in (
        "COCO-Detection",
        "PascalVOC-Detection",
        "Synthetic-Detection",
        "Synthetic-Converge",
        "Synthetic-Converge/ablations",
    )
    for p in glob.glob(str(REPO / "configs" / folder / "*.py"))
)

# one config per backbone of the shipped configs, built full size (backbone_name gives the keys);
# take 4-7 s each (2 cores, loaded): `make test-long`
FULL_SIZE = {
    "R-18": "configs/Synthetic-Detection/fcos_R_18_FPN.py",
    "R-50": "configs/COCO-Detection/fcos_R_50_FPN_1x.py",
    "R-101": "configs/COCO-Detection/atss_R_101_FPN_2x_ms.py",
    "X-101": "configs/COCO-Detection/iou_aware_retinanet_X_101_32x8d_FPN_1x.py",
}

# the shrunk model: res2 of 8 channels, FPN and head towers of 64 (GroupNorm: 32 groups of 2
# channels; of 1 channel, a 1 x 1 P7 has one value per group), 2 convs per tower
SHRUNK = dict(channels=64, tower=2, width=8, num_classes=None, norm=None)
SHRUNK_MAX_PARAMETERS = (
    1_500_000  # the largest shrunk model (COCO RetinaNet): 0.96 M; R-50 FCOS: 32 M
)


def backbone_name(model_cfg) -> str:
    """ "R-50", "X-101", ... of a model config's ResNet (the keys of ``FULL_SIZE``)."""
    stages = model_cfg.backbone.bottom_up.stages
    target = getattr(stages._target_, "__name__", str(stages._target_))
    depth = stages.get("depth", 18 if target == "basic_resnet_stages" else 50)
    return f"{'X' if target == 'resnext_stages' else 'R'}-{depth}"


def _load(path):
    cfg = LazyConfig.load(str(REPO / path))
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{path} lacks {key}"
    assert cfg.train.output_dir.startswith("./output/")
    return cfg


def _train_and_inference_step(cfg):
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    num_classes = cfg.model.num_classes
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=3, num_classes=num_classes)
    model.train()
    with EventStorage():
        losses = model(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    total = sum(losses.values())
    total.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient: {unused[:5]}"
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 48, "width": 64}])
    inst = out[0]["instances"]
    assert inst.image_size == (48, 64)
    assert len(inst) <= cfg.model.max_detections_per_image
    # the optimizer and schedule build against the model
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    assert optimizer.param_groups
    sched = instantiate(cfg.lr_multiplier)
    assert 0 < sched(0.5) <= 1.0
    return model


def test_there_are_configs():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS)
def test_config_train_and_inference_step(path):
    cfg = _load(path)
    backbone = backbone_name(cfg.model)
    assert backbone in FULL_SIZE, f"{path}: no full-size test builds a {backbone} (FULL_SIZE)"
    shrink_model(cfg.model, **SHRUNK)
    model = _train_and_inference_step(cfg)
    size = sum(p.numel() for p in model.parameters())
    assert size < SHRUNK_MAX_PARAMETERS, f"{path}: the shrunk model has {size} parameters"


LONG_FULL_SIZE = ("R-101", "X-101")


@pytest.mark.parametrize(
    "backbone,path",
    [
        pytest.param(b, p, id=b, marks=[pytest.mark.long] if b in LONG_FULL_SIZE else [])
        for b, p in FULL_SIZE.items()
    ],
)
def test_full_size_config_train_and_inference_step(backbone, path):
    cfg = _load(path)
    assert backbone_name(cfg.model) == backbone
    _train_and_inference_step(cfg)

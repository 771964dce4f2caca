"""Every shipped config: loads, instantiates, trains one step and runs inference on 2 tiny images."""

import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401

from .helpers import REPO, random_batch

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


def test_there_are_configs():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS)
def test_config_train_and_inference_step(path):
    cfg = LazyConfig.load(str(REPO / path))
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{path} lacks {key}"
    assert cfg.train.output_dir.startswith("./output/")
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

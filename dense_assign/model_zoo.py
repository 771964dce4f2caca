"""Packaged configs and small config helpers.

``get_config("Synthetic-Detection/fcos_R_18_FPN.py")`` loads a config of this project by its path
under ``configs/``, from the source tree (editable install) or from the copy packaged with the
wheel, so project configs and user code do not depend on the current directory.
"""

import os
from typing import Sequence

from detectron2.config import LazyConfig
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler


def config_root() -> str:
    """The folder that holds the packaged configs."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(here, "model_zoo_configs"),
        os.path.join(os.path.dirname(here), "configs"),
    ):
        if os.path.isdir(os.path.join(candidate, "common")):
            return candidate
    raise FileNotFoundError(
        f"dense_assign configs not found next to {here}; reinstall with `pip install -e .`"
    )


def get_config_file(config_path: str) -> str:
    path = os.path.join(config_root(), config_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{config_path} is not a dense_assign config (looked in {config_root()})"
        )
    return path


def get_config(config_path: str):
    """Load a packaged LazyConfig by its path relative to ``configs/``."""
    return LazyConfig.load(get_config_file(config_path))


def resnext_stages(
    *,
    depth: int = 101,
    num_groups: int = 32,
    width_per_group: int = 8,
    norm: str = "FrozenBN",
    stride_in_1x1: bool = False,
):
    """ResNeXt stages for detectron2's ``ResNet`` in a LazyConfig (``make_default_stages`` fixes the
    bottleneck width to out_channels / 4, so it cannot build ResNeXt): bottleneck channels
    ``num_groups * width_per_group`` in res2, doubling at each stage, as detectron2's
    ``build_resnet_backbone`` does for X-101-32x8d."""
    from detectron2.modeling.backbone.resnet import BottleneckBlock, ResNet

    blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
    if depth not in blocks:
        raise ValueError(f"resnext_stages: depth must be one of {sorted(blocks)}, got {depth}")
    stages, in_channels, bottleneck = [], 64, num_groups * width_per_group
    for i, (n, out_channels) in enumerate(zip(blocks[depth], [256, 512, 1024, 2048])):
        stages.append(
            ResNet.make_stage(
                block_class=BottleneckBlock,
                num_blocks=n,
                stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck,
                num_groups=num_groups,
                norm=norm,
                stride_in_1x1=stride_in_1x1,
            )
        )
        in_channels, bottleneck = out_channels, bottleneck * 2
    return stages


def basic_resnet_stages(*, depth: int = 18, width: int = 64, norm: str = "BN"):
    """ResNet-18/34 stages (``BasicBlock``) whose res2 has ``width`` channels, doubling at each
    stage (detectron2's ``make_default_stages`` fixes ``width`` at 64). The converging CPU
    benchmark uses ``width=16``: a quarter of ResNet-18's channels, about 1/16 of its FLOPs."""
    from detectron2.modeling.backbone.resnet import BasicBlock, ResNet

    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
    if depth not in blocks:
        raise ValueError(f"basic_resnet_stages: depth must be one of {sorted(blocks)}, got {depth}")
    if width <= 0:
        raise ValueError(f"basic_resnet_stages: width must be positive, got {width}")
    stages, in_channels = [], width
    for i, n in enumerate(blocks[depth]):
        out_channels = width * 2**i
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=n,
                stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=norm,
            )
        )
        in_channels = out_channels
    return stages


def step_schedule(
    *,
    max_iter: int,
    steps: Sequence[int],
    gamma: float = 0.1,
    warmup_iters: int = 500,
    warmup_factor: float = 1.0 / 3,
    warmup_method: str = "constant",
):
    """LR multiplier: x ``gamma`` at each of ``steps`` (iterations), with a warmup.

    Defaults are the official FCOS / ATSS warmup: constant 1/3 for 500 iterations.
    """
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    steps = sorted(int(s) for s in steps if 0 < int(s) < max_iter)
    # steps that coincide (a very short run of a fraction-based schedule) drop the LR together
    milestones = sorted(set(steps))
    values = [1.0] + [gamma ** sum(s <= m for s in steps) for m in milestones]
    sched = MultiStepParamScheduler(values=values, milestones=milestones, num_updates=max_iter)
    return WarmupParamScheduler(
        sched, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )


def step_schedule_fractions(
    *, max_iter: int, fractions: Sequence[float] = (2 / 3, 8 / 9), **kwargs
):
    """:func:`step_schedule` with steps given as fractions of ``max_iter`` (so that overriding
    ``train.max_iter`` on the command line moves the steps with it)."""
    return step_schedule(max_iter=max_iter, steps=[int(f * max_iter) for f in fractions], **kwargs)


def cosine_schedule(
    *,
    max_iter: int,
    warmup_iters: int = 100,
    warmup_factor: float = 0.01,
    final_value: float = 0.0,
):
    """LR multiplier: linear warmup over ``warmup_iters`` iterations from ``warmup_factor``, then a
    cosine decay from 1 to ``final_value`` at ``max_iter`` (the converging CPU benchmark's schedule;
    with ``max_iter`` interpolated from ``train.max_iter``, an override moves it along)."""
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    sched = CosineParamScheduler(start_value=1.0, end_value=float(final_value))
    return WarmupParamScheduler(sched, warmup_factor, min(warmup_iters / max_iter, 1.0), "linear")

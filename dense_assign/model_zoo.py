"""Packaged configs and small config helpers.

``get_config("Synthetic-Detection/fcos_R_18_FPN.py")`` loads a config of this project by its path
under ``configs/``, from the source tree (editable install) or from the copy packaged with the
wheel, so project configs and user code do not depend on the current directory.
"""
import os
from typing import Sequence

from detectron2.config import LazyConfig
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def config_root() -> str:
    """The folder that holds the packaged configs."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "model_zoo_configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(os.path.join(candidate, "common")):
            return candidate
    raise FileNotFoundError(
        f"dense_assign configs not found next to {here}; reinstall with `pip install -e .`"
    )


def get_config_file(config_path: str) -> str:
    path = os.path.join(config_root(), config_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{config_path} is not a dense_assign config (looked in {config_root()})")
    return path


def get_config(config_path: str):
    """Load a packaged LazyConfig by its path relative to ``configs/``."""
    return LazyConfig.load(get_config_file(config_path))


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
    steps = [int(s) for s in steps if 0 < int(s) < max_iter]
    values = [gamma**i for i in range(len(steps) + 1)]
    sched = MultiStepParamScheduler(values=values, milestones=steps, num_updates=max_iter)
    return WarmupParamScheduler(
        sched, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )


def step_schedule_fractions(*, max_iter: int, fractions: Sequence[float] = (2 / 3, 8 / 9), **kwargs):
    """:func:`step_schedule` with steps given as fractions of ``max_iter`` (so that overriding
    ``train.max_iter`` on the command line moves the steps with it)."""
    return step_schedule(max_iter=max_iter, steps=[int(f * max_iter) for f in fractions], **kwargs)

"""Training stability: stop on a non-finite loss, naming it; optional gradient clipping.

* :class:`FiniteLossCheck` (mixed into the trainers of :func:`dense_assign.engine.build_trainer`):
  before the optimizer step of each iteration, every process checks each loss of the model's loss
  dict; if any is NaN or infinite in any process, all processes raise
  :class:`NonFiniteLossError` (a ``FloatingPointError``) naming the iteration and the loss(es).
  detectron2's own check (``SimpleTrainer.write_metrics``) looks only at the sum of the losses
  averaged over processes, raises in the main process only (the others then wait forever in the
  next collective) and does not say which loss.
* :func:`add_gradient_clipping` (``train.clip_grad``, see
  :data:`dense_assign.engine.config.CLIP_GRAD_DEFAULTS`): the optimizer clips the gradients at
  the start of its ``step``, which is where both detectron2 v0.6 and main call into it, and, with
  AMP, after ``GradScaler`` has unscaled them (``GradScaler.step`` unscales, then calls
  ``optimizer.step``). The global norm before clipping is logged as ``grad_norm``.
"""

from typing import Dict, List, Mapping

import torch
from detectron2.utils import comm

from .. import deferred
from ..deferred import put_scalar

__all__ = [
    "NonFiniteLossError",
    "FiniteLossCheck",
    "non_finite_losses",
    "check_losses_finite",
    "add_gradient_clipping",
]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and the loss."""


def non_finite_losses(loss_dict: Mapping[str, torch.Tensor]) -> Dict[str, float]:
    """The losses of ``loss_dict`` that are not finite, as {name: value}."""
    bad = {}
    for name, value in loss_dict.items():
        value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        if not bool(torch.isfinite(value).all()):
            bad[name] = float(value.float().sum()) if value.numel() else float("nan")
    return bad


def check_losses_finite(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteLossError` in every process when a loss of any process is not
    finite. With several processes the per-process findings are exchanged with detectron2's
    ``comm.all_gather`` (CPU, gloo), so that CPU values (:func:`dense_assign.deferred.
    read_step_values`) are checked without any GPU synchronization."""
    bad = non_finite_losses(loss_dict)
    per_process = comm.all_gather(bad) if comm.get_world_size() > 1 else [bad]
    if not any(per_process):
        return
    named: List[str] = []
    for rank, losses in enumerate(per_process):
        for name, value in losses.items():
            where = f" (process {rank})" if len(per_process) > 1 else ""
            named.append(f"{name}={value}{where}")
    finite = {
        k: round(float(v.detach()), 6)
        for k, v in loss_dict.items()
        if k not in bad and isinstance(v, torch.Tensor)
    }
    raise NonFiniteLossError(
        f"Non-finite loss at iteration {iteration}: {', '.join(named)} "
        f"(the other losses of this process: {finite}). Training stopped before the optimizer "
        "step of this iteration; --resume restarts from the last checkpoint. Consider a lower "
        "learning rate, a longer warmup or train.clip_grad.enabled=True."
    )


class FiniteLossCheck:
    """Mixin for detectron2's ``SimpleTrainer`` / ``AMPTrainer``: each ``run_step`` is a
    :func:`dense_assign.deferred.training_step`, and ``_write_metrics`` (which both call after the
    backward pass and before the optimizer step; its signature differs between detectron2 v0.6
    and main, hence ``*args``) first reads the step's queued checks, scalars and losses in one
    copy, then checks the losses (:func:`check_losses_finite`) and hands detectron2 CPU values:
    one GPU synchronization per step where detectron2 alone makes one per loss."""

    #: Defer CPU tensors' reads too (tests: the GPU code path without a GPU).
    defer_cpu_reads = False

    def run_step(self):
        with deferred.training_step(cpu_too=self.defer_cpu_reads):
            return super().run_step()

    def _write_metrics(self, loss_dict, *args, **kwargs):
        if isinstance(loss_dict, Mapping):
            loss_dict = deferred.read_step_values(loss_dict)
            check_losses_finite(loss_dict, self.iter)
        return super()._write_metrics(loss_dict, *args, **kwargs)


def add_gradient_clipping(optimizer: torch.optim.Optimizer, options: Dict) -> torch.optim.Optimizer:
    """Make ``optimizer`` clip gradients in ``step`` as ``options`` (``train.clip_grad``, checked
    by :func:`dense_assign.engine.config.clip_grad_options`) say; returns it. Must be called
    before an LR scheduler wraps ``optimizer.step``. No-op when not enabled."""
    if not options.get("enabled", False):
        return optimizer
    clip_type = options["clip_type"]
    clip_value = float(options["clip_value"])
    norm_type = float(options["norm_type"])
    base = type(optimizer)

    def params():
        return [
            p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]

    class ClippingOptimizer(base):
        def step(self, *args, **kwargs):
            if clip_type == "norm":
                norm = torch.nn.utils.clip_grad_norm_(params(), clip_value, norm_type=norm_type)
                put_scalar("grad_norm", norm)
            else:
                torch.nn.utils.clip_grad_value_(params(), clip_value)
            return super().step(*args, **kwargs)

    ClippingOptimizer.__name__ = ClippingOptimizer.__qualname__ = f"{base.__name__}WithClipGrad"
    optimizer.__class__ = ClippingOptimizer
    return optimizer

"""Checks and logged scalars of a training step, read from the GPU in one copy per step.

Reading a CUDA tensor on the host (``bool(t)``, ``float(t)``, ``t.item()``) waits until the GPU
has run everything queued before it: a synchronization that stalls the CPU's work of queueing the
next kernels. The training step needs a few such reads for its guarantees (finite box outputs,
valid ground truth, finite losses) and its logs (``assign/*``, ``num_pos_anchors``, ...). Inside a
step of the project's trainers (:func:`training_step`), the reads of CUDA tensors are deferred:

* :func:`check` queues a flag (a 0-dim bool tensor, True = fine) with the error to raise when it
  is False;
* :func:`put_scalar` queues a value for detectron2's ``EventStorage``;
* :func:`read_step_values` (the trainers call it in ``_write_metrics``, after the backward pass and
  before the optimizer step, where detectron2 copies the losses to the host anyway) copies the
  queued flags and scalars and the losses to the host in one copy, raises the first failed check,
  stores the scalars, and returns the losses as CPU tensors;
* an exception inside the step (an assigner or a loss failing on NaN boxes, say) first reads the
  queued flags: a failed check is raised in its place, with the original as its cause.

Outside a step (a direct ``model(batch)``, the tools, evaluation) and for CPU tensors, where a read
costs no synchronization, both act at once, as plain code would. The errors and their messages
are the same in both modes; only when they are raised differs (on CUDA: before the optimizer
step of the same iteration instead of inside the forward pass).
"""

import contextlib
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from detectron2.utils.events import get_event_storage

__all__ = ["check", "put_scalar", "training_step", "read_step_values", "deferring"]

# One training step at a time per process (the data loader's workers are other processes).
_state = {"active": False, "cpu_too": False}
_checks: List[Tuple[torch.Tensor, Callable[[], Exception]]] = []
_scalars: List[Tuple[str, torch.Tensor]] = []


def deferring() -> bool:
    """True inside :func:`training_step`."""
    return _state["active"]


def _deferred(value) -> bool:
    return (
        _state["active"]
        and isinstance(value, torch.Tensor)
        and (value.device.type != "cpu" or _state["cpu_too"])
    )


def check(ok: torch.Tensor, error: Callable[[], Exception]) -> None:
    """Raise ``error()`` when the 0-dim bool tensor ``ok`` is False: now, or (a CUDA tensor inside
    a training step) when the step's values are read. ``error`` is called only on failure and
    may read tensors (it runs after the synchronization)."""
    if _deferred(ok):
        _checks.append((ok.detach().reshape(()), error))
    elif not bool(ok):
        raise error()


def put_scalar(name: str, value) -> None:
    """``EventStorage.put_scalar`` when there is a storage (training); no-op otherwise. A CUDA
    tensor inside a training step is stored when the step's values are read."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no EventStorage: not training
        return
    if _deferred(value):
        _scalars.append((name, value.detach().float().reshape(())))
    else:
        storage.put_scalar(name, float(value))


def _take():
    checks, scalars = list(_checks), list(_scalars)
    _checks.clear()
    _scalars.clear()
    return checks, scalars


def _to_host(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """The 0-dim tensors as CPU float tensors, with one device-to-host copy per device."""
    out: List = [None] * len(tensors)
    by_device: Dict[torch.device, List[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    for device, idx in by_device.items():
        stacked = torch.stack([tensors[i].detach().float().reshape(()) for i in idx])
        host = stacked.cpu() if device.type != "cpu" else stacked
        for j, i in enumerate(idx):
            out[i] = host[j]
    return out


def _raise_failed(checks, flags, cause: Optional[BaseException] = None) -> None:
    for (_, error), flag in zip(checks, flags):
        if not bool(flag):
            if cause is None:
                raise error()
            raise error() from cause


def _read_queued(extra: List[torch.Tensor]) -> List[torch.Tensor]:
    """Read the queued checks and scalars and the 0-dim tensors ``extra`` in one copy (none when
    all are empty); raise the first failed check; store the scalars; return ``extra`` on the
    host."""
    checks, scalars = _take()
    host = _to_host([c for c, _ in checks] + [v for _, v in scalars] + extra)
    _raise_failed(checks, host[: len(checks)])
    if scalars:
        storage = get_event_storage()
        for (name, _), value in zip(scalars, host[len(checks) :]):
            storage.put_scalar(name, float(value))
    return host[len(checks) + len(scalars) :]


def read_step_values(losses: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Read the step's queued checks and scalars and ``losses`` (0-dim tensors; the sum of each
    is taken otherwise) in one copy; raise the first failed check; store the scalars; return the
    losses as 0-dim CPU float tensors. Nothing is queued outside a step: then it only converts
    ``losses``."""
    tensors = [
        v.detach().float().sum() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
        for v in losses.values()
    ]
    return dict(zip(losses, _read_queued(tensors)))


@contextlib.contextmanager
def training_step(cpu_too: bool = False):
    """Defer the host reads of CUDA tensors (see the module docstring) for one training step.
    On an exception, a queued check that failed is raised instead (the exception is its cause);
    values still queued at the end (logged after the losses were read, e.g. ``grad_norm``) are
    stored then. ``cpu_too``: defer CPU tensors as well (what the tests use to run the deferred
    path without a GPU)."""
    if _state["active"]:  # nested: the outer step reads the values
        yield
        return
    _take()  # nothing should be left; never let stale values leak into this step
    _state["active"], _state["cpu_too"] = True, bool(cpu_too)
    try:
        yield
    except BaseException as e:
        checks, _ = _take()
        _raise_failed(checks, _to_host([c for c, _ in checks]), cause=e)
        raise
    else:
        _read_queued([])
    finally:
        _state["active"], _state["cpu_too"] = False, False

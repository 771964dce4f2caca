"""Checkpoints that are never half written.

fvcore's ``Checkpointer.save`` (detectron2's ``DetectionCheckpointer``) writes ``model_*.pth`` and
then ``last_checkpoint`` in place: a process killed during the write (kill -9, out of memory, a
preempted job) leaves a truncated file that ``last_checkpoint`` may already name, and ``--resume``
then fails to load it. :class:`AtomicCheckpointer` writes each file to a temporary name in the same
folder, flushes it to disk and renames it over the final name (``os.replace``, atomic on POSIX),
``model_*.pth`` first and ``last_checkpoint`` after: at any moment ``last_checkpoint`` names a
complete checkpoint. Temporary files left by a killed process are removed by the next save.
Remote paths (``s3://...`` through ``PathManager``) are written as fvcore does.

**Checkpoints that do not fit the model.** fvcore loads what fits and only logs a warning for model
parameters the checkpoint lacks or has with another shape (``Skip loading parameter ...``).
:class:`AtomicCheckpointer` keeps the ``_IncompatibleKeys`` of its last load
(:attr:`~AtomicCheckpointer.incompatible`), and :func:`check_checkpoint_fits` turns them into a
:class:`CheckpointError` naming the parameters and, when the class scores differ, the class count
the checkpoint was trained for (``--eval-only`` uses it: see ``dense_assign.engine.trainer``).

**Retention across restarts.** fvcore's ``PeriodicCheckpointer`` (``max_to_keep``) only deletes
the checkpoints it saved itself, in this process: after ``--resume``, those of the interrupted run
stayed forever. :class:`RetainingPeriodicCheckpointer` counts the ``model_<iteration>.pth`` files
of the output folder from before the iteration it starts at (``model_final.pth`` never counts) as
its recent checkpoints, oldest first, and deletes the oldest beyond ``max_to_keep`` at the start.
"""

import glob
import logging
import os
import re
from typing import Any, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import hooks

from ..fileio import TMP_MARK, atomic_write
from .config import ConfigError

try:  # fvcore's filter of parameters shared under two names (private; absent: no filtering)
    from fvcore.common.checkpoint import _filter_reused_missing_keys
except ImportError:  # pragma: no cover

    def _filter_reused_missing_keys(model, keys):
        return list(keys)


__all__ = [
    "AtomicCheckpointer",
    "CheckpointError",
    "RetainingPeriodicCheckpointer",
    "existing_checkpoints",
    "atomic_write",
    "check_checkpoint_fits",
    "checkpoint_mismatch",
    "TMP_MARK",
]

logger = logging.getLogger(__name__)


def _is_local(path: str) -> bool:
    return "://" not in path


class CheckpointError(ConfigError):
    """A checkpoint that does not fit the model (missing or shape-mismatched parameters)."""


#: Parameters named in a :class:`CheckpointError` (the rest are counted).
_SHOWN = 5
#: Missing keys that do not change what the model computes.
_HARMLESS_MISSING = ("num_batches_tracked",)


def _unwrap(model):
    return getattr(model, "module", model)


def _shown(names) -> str:
    names = list(names)
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _class_counts(model, incorrect_shapes):
    """(key, model.num_classes, classes of the checkpoint) for a mismatched class-score weight
    (``...cls_score.weight``, or its bias), or None. The checkpoint's class count is its number of
    output channels divided by the priors per location, which is the model's output channels
    divided by ``model.num_classes``."""
    num_classes = getattr(_unwrap(model), "num_classes", None)
    if not isinstance(num_classes, int) or num_classes <= 0:
        return None
    found = {}
    for key, shape_checkpoint, shape_model in incorrect_shapes:
        for suffix in ("cls_score.weight", "cls_score.bias"):
            if key.endswith(suffix) and suffix not in found and shape_model and shape_checkpoint:
                found[suffix] = (key, shape_checkpoint[0], shape_model[0])
    for suffix in ("cls_score.weight", "cls_score.bias"):
        if suffix not in found:
            continue
        key, rows_checkpoint, rows_model = found[suffix]
        if rows_model % num_classes:
            continue
        priors = rows_model // num_classes
        classes = rows_checkpoint / priors
        classes = int(classes) if classes == int(classes) else round(classes, 2)
        return key, num_classes, classes, priors
    return None


def checkpoint_mismatch(model, incompatible) -> str:
    """What of the model a checkpoint load (``incompatible``: fvcore's ``_IncompatibleKeys``)
    did not set: the missing parameters and buffers (``num_batches_tracked`` aside), those with
    another shape, and for a class-score weight of another shape the class count the checkpoint
    was trained for. Empty when everything was loaded (unexpected keys of the checkpoint, which
    the model does not use, do not count)."""
    if incompatible is None:
        return ""
    shapes = list(incompatible.incorrect_shapes)
    reshaped = {key for key, _, _ in shapes}  # fvcore drops them before loading: also "missing"
    missing = _filter_reused_missing_keys(_unwrap(model), list(incompatible.missing_keys))
    missing = sorted(k for k in missing if not k.endswith(_HARMLESS_MISSING) and k not in reshaped)
    parts = []
    if missing:
        parts.append(f"{len(missing)} model parameter(s) missing from it ({_shown(missing)})")
    if shapes:
        described = [f"{key} {tuple(ckpt)} vs {tuple(mdl)}" for key, ckpt, mdl in shapes]
        parts.append(
            f"{len(shapes)} model parameter(s) with another shape (checkpoint vs model: "
            f"{_shown(described)})"
        )
    if not parts:
        return ""
    text = "; ".join(parts)
    classes = _class_counts(model, shapes)
    if classes is not None:
        key, num_classes, trained, priors = classes
        per = f", {priors} priors per location" if priors != 1 else ""
        text += (
            f". The class scores ({key}) were trained for {trained} classes{per}, but "
            f"model.num_classes={num_classes}"
        )
    return text


def check_checkpoint_fits(model, incompatible, path: str, allow_partial: bool = False) -> str:
    """Raise a :class:`CheckpointError` when the load of ``path`` left model parameters unset
    (see :func:`checkpoint_mismatch`); with ``allow_partial``, log a warning instead. Returns the
    mismatch (empty when the checkpoint fits)."""
    mismatch = checkpoint_mismatch(model, incompatible)
    if not mismatch:
        return ""
    if allow_partial:
        logger.warning(
            f"Checkpoint {path} does not fit the model: {mismatch}. Those parameters keep their "
            "initialization (train.allow_partial_checkpoint=True)"
        )
        return mismatch
    raise CheckpointError(
        f"Checkpoint {path} does not fit the model: {mismatch}. Evaluating it would use "
        "randomly initialized weights for those parameters. Use the config the checkpoint was "
        "trained with (model.num_classes, the head), or add train.allow_partial_checkpoint=True "
        "to evaluate it anyway"
    )


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` and ``tag_last_checkpoint`` write atomically.
    :attr:`incompatible` is the ``_IncompatibleKeys`` of the last model load (None before one,
    or when the checkpointer returned none)."""

    incompatible = None

    def _load_model(self, checkpoint: Any):
        incompatible = super()._load_model(checkpoint)
        self.incompatible = incompatible
        return incompatible

    def _remove_stale_tmp_files(self) -> None:
        for path in glob.glob(os.path.join(glob.escape(self.save_dir), f"*{TMP_MARK}*")):
            try:
                os.remove(path)
                logger.info(f"Removed {path}, left by an interrupted checkpoint write")
            except OSError:
                pass

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk or not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        os.makedirs(self.save_dir, exist_ok=True)
        self._remove_stale_tmp_files()
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        assert os.path.basename(save_file) == basename, basename
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")


def existing_checkpoints(
    save_dir: str, prefix: str = "model", path_manager=None
) -> List[Tuple[int, str]]:
    """``(iteration, path)`` of the periodic checkpoints ``<prefix>_<iteration>.pth`` in
    ``save_dir``, sorted by iteration (``<prefix>_final.pth`` and other files are not listed)."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)\.pth$")
    try:
        names = path_manager.ls(save_dir) if path_manager is not None else os.listdir(save_dir)
    except (OSError, NotImplementedError):
        return []
    found = []
    for name in names:
        match = pattern.match(os.path.basename(name))
        if match:
            found.append((int(match.group(1)), os.path.join(save_dir, os.path.basename(name))))
    return sorted(found)


#: Name(s) of fvcore's list of the checkpoints a ``PeriodicCheckpointer`` saved, oldest first:
#: ``recent_checkpoints`` in the fvcore that detectron2 v0.6 uses and on fvcore's main branch (which
#: detectron2's main uses too). Another name of a later fvcore goes here.
_RECENT_CHECKPOINTS_ATTRS = ("recent_checkpoints",)


def _recent_checkpoints(hook) -> Optional[list]:
    for name in _RECENT_CHECKPOINTS_ATTRS:
        value = getattr(hook, name, None)
        if isinstance(value, list):
            return value
    return None


class RetainingPeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's ``PeriodicCheckpointer`` hook whose ``max_to_keep`` also counts the
    checkpoints already in the output folder, from before the iteration training starts at (a
    resumed run's): at the start of training the oldest beyond ``max_to_keep`` are deleted, and the
    others are deleted in turn as new ones are saved."""

    def before_train(self):
        super().before_train()
        if self.max_to_keep is None:
            return
        recent = _recent_checkpoints(self)
        if recent is None:
            logger.warning(
                "PeriodicCheckpointer without a recent_checkpoints list: checkpoints from before "
                "this run are not counted by train.checkpointer.max_to_keep"
            )
            return
        start_iter = int(getattr(self.trainer, "start_iter", 0) or 0)
        save_dir = self.checkpointer.save_dir
        prefix = getattr(self, "file_prefix", "model")
        path_manager = getattr(self, "path_manager", None)
        before = [
            path
            for iteration, path in existing_checkpoints(save_dir, prefix, path_manager)
            if iteration < start_iter and path not in recent
        ]
        recent[:0] = before
        while len(recent) > self.max_to_keep:
            path = recent.pop(0)
            try:
                if path_manager is not None:
                    path_manager.rm(path)
                else:
                    os.remove(path)
                logger.info(
                    f"Removed {path}: train.checkpointer.max_to_keep={self.max_to_keep} counts "
                    "the checkpoints of the run before this one"
                )
            except OSError as e:
                logger.warning(f"Could not remove old checkpoint {path}: {e}")

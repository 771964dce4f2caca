"""Checkpoints that are never half written.

fvcore's ``Checkpointer.save`` (detectron2's ``DetectionCheckpointer``) writes ``model_*.pth`` and
then ``last_checkpoint`` in place: a process killed during the write (kill -9, out of memory, a
preempted job) leaves a truncated file that ``last_checkpoint`` may already name, and ``--resume``
then fails to load it. :class:`AtomicCheckpointer` writes each file to a temporary name in the same
folder, flushes it to disk and renames it over the final name (``os.replace``, atomic on POSIX),
``model_*.pth`` first and ``last_checkpoint`` after: at any moment ``last_checkpoint`` names a
complete checkpoint. Temporary files left by a killed process are removed by the next save.
Remote paths (``s3://...`` through ``PathManager``) are written as fvcore does.
"""

import glob
import logging
import os
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_write", "TMP_MARK"]

logger = logging.getLogger(__name__)

#: Part of the name of temporary files: ``<name>.tmp-<pid>``.
TMP_MARK = ".tmp-"


def atomic_write(path: str, write, mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it to ``path``."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_local(path: str) -> bool:
    return "://" not in path


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` and ``tag_last_checkpoint`` write atomically."""

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

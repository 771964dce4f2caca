"""Writing files so that a reader never sees half of one (checkpoints, caches, ``metrics.json``)."""

import os

__all__ = ["TMP_MARK", "atomic_write"]

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

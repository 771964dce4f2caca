"""detectron2's event writers, with an ETA from recent iterations and a clean ``--resume``.

**ETA.** detectron2's ``CommonMetricPrinter`` multiplies the median of up to 1000 iteration times
(all of them, in a run shorter than that) by the iterations left, and leaves out the evaluations.
A run whose speed changes (another job on the machine starts or stops, the data loader warms up)
keeps the old speed in its ETA for hundreds of iterations, and an ETA that reads 0:00:00 may still
have a full evaluation ahead. :class:`RecentETAPrinter` takes the median of the last
:data:`ETA_WINDOW` iteration times, and adds the evaluations still to come at the cost of the last
one (:class:`EvalTimer`; unknown, hence not counted, before the first evaluation of the process).
The rest of the log line is detectron2's.

**Resume.** A run killed after its last checkpoint has written ``metrics.json`` entries (and
TensorBoard events) for iterations that the resumed run trains again. :func:`resume_writers` tells
the writers the iteration the run resumes from: :class:`ResumableJSONWriter` drops the entries from
that iteration on (a new file renamed over the old one), except the final evaluation of a run that
ended there (detectron2 logs it at iteration ``max_iter``, the iteration a longer run resumes
from); :class:`ResumableTensorboardXWriter` writes the ``SessionLog.START`` event that makes
TensorBoard hide the events of the old files from the first step dropped from ``metrics.json`` on
(what ``SummaryWriter(purge_step=...)`` writes; the old event files are left as they are).
"""

import datetime
import json
import logging
import os
import time
from typing import Any, Callable, Iterable, Optional, Tuple

from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from detectron2.utils.file_io import PathManager

from ..fileio import atomic_write

__all__ = [
    "ETA_WINDOW",
    "EvalTimer",
    "RecentETAPrinter",
    "ResumableJSONWriter",
    "ResumableTensorboardXWriter",
    "drop_metrics_from",
    "remaining_evaluations",
    "resume_writers",
]

logger = logging.getLogger(__name__)

#: Iteration times whose median gives the ETA's time per iteration.
ETA_WINDOW = 50

#: Keys of a ``metrics.json`` entry written by a training iteration (an entry without any of them
#: holds evaluation results only).
TRAINING_KEYS = ("total_loss", "time", "data_time", "lr", "eta_seconds")


class EvalTimer:
    """Calls ``function`` (the evaluation of ``EvalHook``) and keeps how long the last call took
    (:attr:`last`, seconds; None before the first call)."""

    def __init__(self, function: Callable[[], Any]):
        self.function = function
        self.last: Optional[float] = None

    def __call__(self):
        start = time.perf_counter()
        try:
            return self.function()
        finally:
            self.last = time.perf_counter() - start


def remaining_evaluations(iteration: int, max_iter: int, eval_period: int) -> int:
    """Evaluations ``EvalHook`` still runs after the hooks of ``iteration`` have run: one after
    each iteration ``i`` with ``(i + 1) % eval_period == 0`` (before ``max_iter - 1``), and one
    after the last iteration."""
    periodic = 0
    if eval_period and eval_period > 0:
        # next_iter = i + 1 in [iteration + 2, max_iter - 1], a multiple of eval_period
        periodic = max(0, (max_iter - 1) // eval_period - (iteration + 1) // eval_period)
    return periodic + (1 if iteration < max_iter else 0)


class RecentETAPrinter(CommonMetricPrinter):
    """``CommonMetricPrinter`` whose ETA is the median of the last ``eta_window`` iteration times
    times the iterations left, plus the evaluations left (every ``eval_period`` iterations and
    after the last one) at the cost of the last evaluation ``eval_timer`` measured. Before
    iteration times exist (detectron2's ``IterationTimer`` skips the first ones) it falls back to
    detectron2's estimate. The log line is otherwise detectron2's."""

    def __init__(
        self,
        max_iter: Optional[int] = None,
        window_size: int = 20,
        eta_window: int = ETA_WINDOW,
        eval_period: int = 0,
        eval_timer: Optional[EvalTimer] = None,
    ):
        super().__init__(max_iter, window_size=window_size)
        self._eta_window = int(eta_window)
        self._eval_period = int(eval_period or 0)
        self._eval_timer = eval_timer

    def eta_seconds(self, storage) -> Optional[float]:
        """The ETA in seconds, None without iteration times."""
        if self._max_iter is None:
            return None
        try:
            times = storage.history("time")
        except KeyError:
            return None
        iteration = storage.iter
        seconds = times.median(self._eta_window) * max(0, self._max_iter - iteration - 1)
        cost = self._eval_timer.last if self._eval_timer is not None else None
        if cost is not None:
            seconds += cost * remaining_evaluations(iteration, self._max_iter, self._eval_period)
        return seconds

    def _get_eta(self, storage) -> Optional[str]:
        seconds = self.eta_seconds(storage)
        if seconds is None:
            return super()._get_eta(storage)
        storage.put_scalar("eta_seconds", seconds, smoothing_hint=False)
        return str(datetime.timedelta(seconds=int(seconds)))


def drop_metrics_from(path: str, iteration: int) -> Tuple[int, Optional[int]]:
    """Remove the entries of ``metrics.json`` (one json per line) whose ``iteration`` is
    ``iteration`` or later, and lines that do not parse (a line cut by a killed process), by writing
    the rest to a new file renamed over ``path``. An entry of ``iteration`` itself without training
    keys (:data:`TRAINING_KEYS`) stays: the final evaluation of a run of ``max_iter=iteration``,
    which a longer run resumes. Returns the number of lines removed and the first iteration
    removed (None when none; the file is left untouched when nothing is removed, or missing)."""
    if not os.path.isfile(path):
        return 0, None
    with open(path) as f:
        lines = [line for line in f.readlines() if line.strip()]
    kept, first = [], None
    for line in lines:
        try:
            entry = json.loads(line)
            at = int(entry["iteration"])
            final_eval = at == iteration and not any(k in entry for k in TRAINING_KEYS)
            keep = at < iteration or final_eval
        except (ValueError, KeyError, TypeError):
            keep, at = False, None
        if keep:
            kept.append(line if line.endswith("\n") else line + "\n")
        elif at is not None:
            first = at if first is None else min(first, at)
    dropped = len(lines) - len(kept)
    if dropped:
        atomic_write(path, lambda f: f.writelines(kept), mode="w")
    return dropped, first


class ResumableJSONWriter(JSONWriter):
    """``JSONWriter`` that can drop the entries of iterations a resumed run trains again."""

    def __init__(self, json_file: str, window_size: int = 20):
        super().__init__(json_file, window_size=window_size)
        self._json_file = json_file

    def resume_from(self, iteration: int) -> Optional[int]:
        """Drop the entries from ``iteration`` on (:func:`drop_metrics_from`) and append to the
        new file. Returns the first iteration dropped (None: none; ``iteration`` for a remote
        file, left as it is)."""
        if "://" in self._json_file:
            return iteration
        self._file_handle.close()
        try:
            dropped, first = drop_metrics_from(self._json_file, iteration)
        finally:
            self._file_handle = PathManager.open(self._json_file, "a")
        if dropped:
            logger.info(
                f"Resuming from iteration {iteration}: removed {dropped} entries of iterations "
                f">= {iteration} from {self._json_file} (written before the interruption)"
            )
        return first


class ResumableTensorboardXWriter(TensorboardXWriter):
    """``TensorboardXWriter`` that tells TensorBoard to hide the events from the step a resumed
    run starts at (those of the interrupted run's files)."""

    def purge_from(self, iteration: int) -> None:
        """Hide the events of steps >= ``iteration`` written by earlier runs."""
        try:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            self._writer._get_file_writer().add_event(
                Event(step=int(iteration), session_log=SessionLog(status=SessionLog.START))
            )
        except Exception as e:  # pragma: no cover - another SummaryWriter
            logger.warning(f"TensorBoard events of iterations >= {iteration} not purged: {e!r}")


def resume_writers(hooks: Iterable[Any], iteration: int) -> None:
    """Prepare the writers of the ``PeriodicWriter`` hooks in ``hooks`` for a run that resumes
    at ``iteration``: ``metrics.json`` loses the entries from ``iteration`` on, and TensorBoard
    hides the events from the first iteration dropped there (all from ``iteration`` on when there
    is no :class:`ResumableJSONWriter`; none when it dropped nothing: the final evaluation logged
    at ``iteration`` by a finished run stays)."""
    writers = [w for hook in hooks for w in (getattr(hook, "_writers", None) or [])]
    purge: Optional[int] = iteration
    json_writers = [w for w in writers if isinstance(w, ResumableJSONWriter)]
    if json_writers:
        firsts = [w.resume_from(iteration) for w in json_writers]
        firsts = [f for f in firsts if f is not None]
        purge = min(firsts) if firsts else None
    if purge is not None:
        for writer in writers:
            if isinstance(writer, ResumableTensorboardXWriter):
                writer.purge_from(purge)

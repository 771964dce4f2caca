"""Training phases of an assigner, switched at fractions of the training's iterations.

Some methods change their rule during training: SAPD trains on one-hot minimal-loss levels for the
first half, then on soft-selected levels (its Sec. 3.4); TOOD trains with ATSS for the first epochs,
then with its task-aligned assigner. :class:`PhaseSchedule` says which phase an iteration is in:

- phase ``p`` (1-based) runs from ``int(fractions[p - 2] * max_iter)`` to the next switch;
- the iteration is read from detectron2's ``EventStorage``, so ``--resume`` lands in the right phase
  (the storage starts at the checkpoint's iteration) and nothing is saved in checkpoints;
- ``max_iter`` comes from the config (``"${oc.select:...train.max_iter,null}"`` in a model config), so
  a command-line ``train.max_iter=N`` moves the switches with it;
- without an ``EventStorage`` (evaluation, analysis tools, tests) or without ``max_iter``, the last
  phase: the rule a finished training ends with.

Each change of phase is logged once, with the iteration and the switch iterations.
"""

import logging
from typing import Callable, List, Optional, Sequence

from detectron2.utils.events import get_event_storage

logger = logging.getLogger(__name__)


class PhaseSchedule:
    def __init__(
        self,
        max_iter: Optional[int],
        fractions: Sequence[float],
        name: str = "assigner",
        describe: Optional[Callable[[int], str]] = None,
    ):
        """
        Args:
            max_iter: the training's iterations (``train.max_iter``); None: always the last phase.
            fractions: where phases 2, 3, ... start, as non-decreasing fractions of ``max_iter``
                in [0, 1].
            name: the method, for the log line of a phase change.
            describe: ``phase -> text`` for that log line.
        """
        fractions = [float(f) for f in fractions]
        if any(not 0.0 <= f <= 1.0 for f in fractions) or fractions != sorted(fractions):
            raise ValueError(
                f"{name}: phase switches must be non-decreasing fractions of train.max_iter in "
                f"[0, 1], got {fractions}"
            )
        if max_iter is not None and int(max_iter) < 0:
            raise ValueError(f"{name}: max_iter must be >= 0 or None, got {max_iter}")
        self.max_iter = None if max_iter is None else int(max_iter)
        self.fractions = fractions
        self.name = name
        self.describe = describe
        self._last: Optional[int] = None

    @property
    def num_phases(self) -> int:
        return len(self.fractions) + 1

    @property
    def switch_iters(self) -> Optional[List[int]]:
        """First iteration of phases 2, 3, ... (None without ``max_iter``)."""
        if self.max_iter is None:
            return None
        return [int(f * self.max_iter) for f in self.fractions]

    def phase_at(self, iteration: Optional[int]) -> int:
        """The phase of ``iteration`` (None: not training, the last phase)."""
        switches = self.switch_iters
        if iteration is None or switches is None:
            return self.num_phases
        return 1 + sum(iteration >= s for s in switches)

    def __call__(self) -> int:
        """The phase of the running training's iteration (see module doc)."""
        try:
            iteration: Optional[int] = get_event_storage().iter
        except AssertionError:  # no EventStorage: not training
            iteration = None
        phase = self.phase_at(iteration)
        if phase != self._last and iteration is not None:
            self._last = phase
            what = f": {self.describe(phase)}" if self.describe else ""
            logger.info(
                f"{self.name} phase {phase} at iteration {iteration} (switch iterations "
                f"{self.switch_iters}, max_iter={self.max_iter}){what}"
            )
        return phase

    def __repr__(self) -> str:
        return f"PhaseSchedule(max_iter={self.max_iter}, fractions={self.fractions})"

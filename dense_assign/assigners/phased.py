"""Assigners in sequence: one assigner per phase of training.

Some recipes change the assignment rule during training. TOOD (Feng et al., ICCV 2021) assigns
with ATSS for the first 4 of its 12 epochs and with its task-aligned assigner afterwards
(docs/methods.md, "TOOD task-aligned assignment"): ``PhasedAssigner(phases=[ATSSAssigner(...),
TaskAlignedAssigner(...)], switch_fractions=[4 / 12], max_iter=...)``.

- Phases switch at fractions of ``max_iter`` (the config interpolates ``train.max_iter``), read
  from detectron2's ``EventStorage`` by the shared
  :class:`~dense_assign.assigners.schedule.PhaseSchedule`: ``--resume`` lands in the right phase;
  without a storage (evaluation, tools, tests) or without ``max_iter``, the last phase runs.
- The phases are sub-modules (an ``nn.ModuleList``): learnable ones train, checkpoint and move with
  the model. The assigner is prediction-aware when any phase is; the predictions go only to the
  phases that want them.
- Soft targets: a loss that reads ``AssignResult.cls_targets`` (quality focal loss, box losses
  weighted by the targets) needs them in every phase. A phase that gives none (ATSS) gets
  ``fill_cls_targets`` (default 1) at its positives and 0 elsewhere: hard labels, what TOOD's
  warm-up trains on. ``fill_cls_targets=None`` leaves such results as they are.
- ``AssignResult.stats["phase"]``: the phase that ran (1-based), logged as ``assigner/phase``.

``PhasedAssigner(num_classes=K)`` alone is TOOD's schedule with default sub-assigners: ATSS (k = 9,
on the priors' own boxes) for the first third, then the task-aligned assigner.
"""

from typing import Optional, Sequence

import torch
from torch import nn

from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, Priors
from .atss import ATSSAssigner
from .base import BaseAssigner
from .schedule import PhaseSchedule
from .tal import TaskAlignedAssigner

#: TOOD's warm-up: ATSS for the first 4 of 12 epochs (official config, ``initial_epoch=4``).
TOOD_WARMUP_FRACTION = 4 / 12


@ASSIGNER_REGISTRY.register()
class PhasedAssigner(BaseAssigner):
    """One assigner per training phase (see module doc)."""

    def __init__(
        self,
        *,
        num_classes: int,
        phases: Optional[Sequence[nn.Module]] = None,
        switch_fractions: Optional[Sequence[float]] = None,
        max_iter: Optional[int] = None,
        fill_cls_targets: Optional[float] = 1.0,
        **kwargs,
    ):
        """
        Args:
            phases: the assigners, in the order they run (at least one), built for
                ``num_classes``. Default: TOOD's, ``[ATSSAssigner, TaskAlignedAssigner]`` with
                their defaults (``chunk_pairs`` passed on).
            switch_fractions: where phases 2, 3, ... start, as non-decreasing fractions of
                ``max_iter``; one fewer than the phases. Default with the default phases: 1/3.
            max_iter: the training's iterations (configs interpolate ``train.max_iter``); None:
                always the last phase.
            fill_cls_targets: the soft target of the positives of a phase that gives none
                (None: leave ``cls_targets`` absent).
            chunk_pairs: see :class:`BaseAssigner`.
        """
        super().__init__(num_classes=num_classes, **kwargs)
        if phases is None:
            phases = [
                ATSSAssigner(num_classes=num_classes, **kwargs),
                TaskAlignedAssigner(num_classes=num_classes, **kwargs),
            ]
            if switch_fractions is None:
                switch_fractions = [TOOD_WARMUP_FRACTION]
        phases = list(phases)
        switch_fractions = [] if switch_fractions is None else list(switch_fractions)
        if not phases:
            raise ValueError("model.assigner.phases must hold at least one assigner")
        for i, phase in enumerate(phases):
            if not isinstance(phase, nn.Module) or not callable(phase):
                raise ValueError(
                    f"model.assigner.phases[{i}] must be an assigner module, got {type(phase)}"
                )
            k = getattr(phase, "num_classes", num_classes)
            if k != num_classes:
                raise ValueError(
                    f"model.assigner.phases[{i}] ({type(phase).__name__}) has num_classes={k}, "
                    f"the PhasedAssigner {num_classes}"
                )
        if len(switch_fractions) != len(phases) - 1:
            raise ValueError(
                f"model.assigner.switch_fractions needs {len(phases) - 1} value(s) for "
                f"{len(phases)} phases, got {switch_fractions}"
            )
        if fill_cls_targets is not None and not 0.0 <= float(fill_cls_targets) <= 1.0:
            raise ValueError(
                f"model.assigner.fill_cls_targets must be in [0, 1] or None, got {fill_cls_targets}"
            )
        self.phases = nn.ModuleList(phases)
        self.schedule = PhaseSchedule(
            max_iter, switch_fractions, name="PhasedAssigner", describe=self._describe
        )
        self.max_iter = self.schedule.max_iter
        self.fill_cls_targets = None if fill_cls_targets is None else float(fill_cls_targets)
        # an instance attribute: prediction-aware when any phase is
        self.prediction_aware = any(getattr(p, "prediction_aware", False) for p in phases)

    def _describe(self, phase: int) -> str:
        return type(self.phases[phase - 1]).__name__

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, switch_fractions={self.schedule.fractions}, "
            f"max_iter={self.max_iter}, fill_cls_targets={self.fill_cls_targets}"
        )

    @property
    def switch_iters(self):
        """First iteration of phases 2, 3, ... (None without ``max_iter``)."""
        return self.schedule.switch_iters

    def phase(self) -> int:
        """The phase (1-based) of the running training's iteration; the last one when not
        training."""
        return self.schedule()

    def forward(
        self, priors: Priors, gt_instances, predictions=None, image_size=None
    ) -> AssignResult:
        index = self.phase() - 1
        assigner = self.phases[index]
        aware = getattr(assigner, "prediction_aware", False)
        result = assigner(
            priors,
            gt_instances,
            predictions=predictions if aware else None,
            image_size=image_size,
        )
        if result.cls_targets is None and self.fill_cls_targets is not None:
            positive = result.pos_mask(self.num_classes)
            result.cls_targets = positive.to(torch.float32) * self.fill_cls_targets
        result.stats["phase"] = float(index + 1)
        return result

"""The assigner interface and the pieces every assigner shares.

An assigner decides, for one image, which priors train as foreground, for which GT box, and with
what weight::

    result = assigner(priors, gt_instances, predictions=None, image_size=(H, W))   # AssignResult

Hard assigners (max-IoU, FCOS, inside-box, ATSS, Pseudo-IoU) are pure functions of their inputs and
run under ``torch.no_grad()``. Learnable ones are ``nn.Module`` s owned by the model, so they train,
checkpoint and move with it. Every assigner handles an image with no GT (all background).

Each assigner separates *which (GT, prior) pairs are candidates* from *what is computed on a
candidate pair*. Candidates come from per-GT windows of the prior grid
(:mod:`dense_assign.assigners.candidates`): for each GT and level, the rectangle of cells whose
priors can satisfy the method's geometric rule (inside the box, the center-sampling region, the
scale range; anchors that can overlap the box; the k nearest cells), expanded into flat
``(gt_idx, prior_idx)`` pair lists on which the rule itself is evaluated, and reduced per prior with
scatter operations (:class:`~.candidates.BestPerPrior`: highest score, ties to the lowest GT index).
Work and memory grow with the number of candidate pairs, not with M x R; pair lists are processed
in chunks of whole GTs of at most ``chunk_pairs`` pairs.

``dense=True`` keeps the previous computation, the reference: the rule on dense (GT chunk, R)
matrices of chunks of GTs (:meth:`BaseAssigner.gt_chunks`, :func:`best_gt_per_prior`). Both give
the same AssignResult (tests/test_candidate_windows.py); priors that are not laid out on a grid
(:meth:`~.candidates.PriorGrid.of` returns None) use the dense computation.

What stays dense (GT-independent, O(R)): the per-prior outputs (labels, matched GT and boxes),
the reductions' (R,) buffers and, for the prediction-aware assigners, the head's outputs.
"""

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances
from torch import Tensor, nn

from ..structures import AssignResult, Priors

# Pairwise (GT x prior) work is done on chunks of GTs holding at most this many (GT, prior) pairs
# (dense matrices or pair lists), so that a 1000-GT image at 800x1333 (22,400 points or 201,600
# anchors) stays within a few hundred MB of temporaries.
DEFAULT_CHUNK_PAIRS = 1 << 22


class BaseAssigner(nn.Module):
    """Base class: subclasses implement :meth:`assign` for an image with at least one GT box."""

    #: True when the assigner needs the head's predictions of the image (AutoAssign, SAPD).
    prediction_aware: bool = False

    def __init__(
        self, *, num_classes: int, chunk_pairs: int = DEFAULT_CHUNK_PAIRS, dense: bool = False
    ):
        """
        Args:
            num_classes: K, foreground classes.
            chunk_pairs: at most this many (GT, prior) pairs are held at once (dense matrices
                or pair lists), see :meth:`gt_chunks`.
            dense: compute on dense (GT chunk x R) matrices instead of per-GT candidate windows
                (the reference the windowed computation is tested against; same result).
        """
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"assigner num_classes must be positive, got {num_classes}")
        if int(chunk_pairs) < 1:
            raise ValueError(f"assigner chunk_pairs must be >= 1, got {chunk_pairs}")
        self.num_classes = int(num_classes)
        self.chunk_pairs = int(chunk_pairs)
        self.dense = bool(dense)

    def prior_grid(self, priors: Priors):
        """The priors' :class:`~.candidates.PriorGrid`, or None for the dense computation
        (``dense=True``, or priors not laid out on a grid)."""
        if self.dense:
            return None
        from .candidates import PriorGrid

        return PriorGrid.of(priors)

    def forward(
        self,
        priors: Priors,
        gt_instances: Instances,
        predictions=None,
        image_size: Optional[Tuple[int, int]] = None,
    ) -> AssignResult:
        if len(gt_instances) == 0 or len(priors) == 0:
            result = self.empty_result(priors)
            result.stats["num_gt"] = float(len(gt_instances))
            result.stats["gt_without_pos"] = float(len(gt_instances))
            return result
        return self.assign(priors, gt_instances, predictions=predictions, image_size=image_size)

    def assign(self, priors, gt_instances, predictions=None, image_size=None) -> AssignResult:
        raise NotImplementedError

    def empty_result(self, priors: Priors) -> AssignResult:
        """Every prior is background (an image without GT boxes)."""
        num = len(priors)
        device = priors.boxes.device
        return AssignResult(
            labels=torch.full((num,), self.num_classes, dtype=torch.long, device=device),
            matched_idxs=torch.full((num,), -1, dtype=torch.long, device=device),
            matched_gt_boxes=priors.boxes.new_zeros((num, 4)),
            stats={"num_gt": 0.0, "num_pos": 0.0, "gt_without_pos": 0.0},
        )

    def result_from_matches(
        self, gt_instances: Instances, matched_idxs: Tensor, ignore: Optional[Tensor] = None
    ) -> AssignResult:
        """Build an AssignResult from per-prior GT indices (-1 = background)."""
        pos = matched_idxs >= 0
        safe = matched_idxs.clamp(min=0)
        classes = gt_instances.gt_classes.index_select(0, safe)
        labels = torch.where(pos, classes, torch.full_like(classes, self.num_classes))
        if ignore is not None:
            labels = torch.where(ignore & ~pos, torch.full_like(labels, -1), labels)
        boxes = gt_instances.gt_boxes.tensor.index_select(0, safe) * pos[:, None].to(torch.float32)
        # positives per GT (index 0: priors without a GT)
        # scatter_add rather than bincount: CUDA's bincount reads the maximum on the host
        slots = matched_idxs + 1
        per_gt = slots.new_zeros(len(gt_instances) + 1).scatter_add_(
            0, slots, torch.ones_like(slots)
        )
        # 0-dim tensors, not Python numbers: reading them on the host would synchronize a GPU
        num_pos = per_gt[1:].sum().float()
        covered = (per_gt[1:] > 0).sum().float()
        return AssignResult(
            labels=labels,
            matched_idxs=matched_idxs,
            matched_gt_boxes=boxes,
            stats={
                "num_gt": float(len(gt_instances)),
                "num_pos": num_pos,
                "gt_without_pos": len(gt_instances) - covered,
            },
        )

    def gt_chunks(self, num_gt: int, num_priors: int):
        """Yield (start, end) GT index ranges with at most ``chunk_pairs`` pairs each."""
        step = max(1, self.chunk_pairs // max(num_priors, 1))
        for start in range(0, num_gt, step):
            yield start, min(start + step, num_gt)


def best_gt_per_prior(
    score_fn: Callable[[int, int], Tensor], chunks, num_priors: int, device
) -> Tuple[Tensor, Tensor]:
    """Per prior, the maximum of ``score_fn`` over GTs and its GT index, computed chunk by chunk.

    ``score_fn(start, end)`` returns a (end - start, R) float score, ``-inf`` for non-candidate
    pairs. Ties keep the lowest GT index (as a dense ``max(dim=0)`` would). Returns (value, index)
    with index -1 where no GT has a finite score.
    """
    best = torch.full((num_priors,), -math.inf, device=device)
    idx = torch.full((num_priors,), -1, dtype=torch.long, device=device)
    for start, end in chunks:
        score = score_fn(start, end)
        value, arg = score.max(dim=0)
        better = value > best
        best = torch.where(better, value, best)
        idx = torch.where(better, arg + start, idx)
    idx[~torch.isfinite(best)] = -1
    return best, idx


def point_box_deltas(points: Tensor, boxes: Tensor) -> Tensor:
    """(l, t, r, b) distances from each point to each box's edges: (M, R, 4) for (R,2), (M,4)."""
    x, y = points[None, :, 0], points[None, :, 1]
    return torch.stack(
        (
            x - boxes[:, None, 0],
            y - boxes[:, None, 1],
            boxes[:, None, 2] - x,
            boxes[:, None, 3] - y,
        ),
        dim=2,
    )


def per_level_values(priors: Priors, values: Sequence, default: float) -> Tensor:
    """Broadcast one value per pyramid level to a (R,) tensor (``default`` for missing levels)."""
    per_level = [float(values[i]) if i < len(values) else default for i in range(priors.num_levels)]
    table = torch.tensor(per_level, dtype=priors.centers.dtype, device=priors.centers.device)
    return table[priors.levels]

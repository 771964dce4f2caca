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
in chunks of whole GTs of at most ``chunk_pairs`` pairs. Priors that are not laid out on a grid
(:meth:`~.candidates.PriorGrid.of` returns None) take every (GT, prior) pair as a candidate
(:class:`~.candidates.AllPairs`), through the same code.

Each assigner has this one implementation. The tests compare it with dense references (the rule on
(GT, R) matrices, ``tests/reference_assigners.py``) on random, edge-case and crowded inputs.

What stays dense (GT-independent, O(R)): the per-prior outputs (labels, matched GT and boxes),
the reductions' (R,) buffers and, for the prediction-aware assigners, the head's outputs.
"""

from typing import Optional, Tuple

import torch
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.structures import Instances
from torch import Tensor, nn

from ..structures import AssignResult, Priors, positives_per_gt
from .candidates import AllPairs, PriorGrid, PriorRows, pairs_in_chunks

# Pairwise (GT x prior) work is done on chunks of GTs holding at most this many (GT, prior) pairs,
# so that a 1000-GT image at 800x1333 (22,400 points or 201,600
# anchors) stays within a few hundred MB of temporaries.
DEFAULT_CHUNK_PAIRS = 1 << 22
#: The box decoding of an assigner used outside a detector: (l, t, r, b) = relu(output) x stride,
#: the point models' (FCOS-style) decoding.
DEFAULT_BOX_TRANSFORM = Box2BoxTransformLinear(normalize_by_size=True)


def match_tensors(
    matched_idxs: Tensor,
    gt_classes: Tensor,
    gt_boxes: Tensor,
    num_classes: int,
    ignore: Optional[Tensor] = None,
    from_positives: bool = True,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(R,) labels, (R, 4) matched GT boxes (zeros off the positives) and (M,) positives per GT
    of per-prior GT indices (-1: background; labels -1 where ``ignore`` and not a positive).

    Two ways to the same tensors. ``from_positives``: the positives' indices first, then the
    labels and boxes filled in at them, which on a CPU costs a fraction of a gather over every
    prior when positives are few (issue #20: the gather was a third of a prediction-aware
    assigner's time at M = 1), but reads the number of positives, a synchronization on a GPU.
    Otherwise: gathers over every prior, of fixed shape (what the GPU path uses)."""
    num_gt = len(gt_classes)
    if from_positives:
        idx = (matched_idxs >= 0).nonzero().squeeze(1)
        gt = matched_idxs.index_select(0, idx)
        labels = torch.full_like(matched_idxs, num_classes)
        if ignore is not None:
            labels.masked_fill_(ignore, -1)  # the positives are written over it
        labels.index_copy_(0, idx, gt_classes.index_select(0, gt).to(labels.dtype))
        boxes = gt_boxes.new_zeros((len(matched_idxs), 4))
        boxes.index_copy_(0, idx, gt_boxes.index_select(0, gt))
        per_gt = torch.zeros(num_gt, dtype=torch.long, device=gt.device)
        return labels, boxes, per_gt.index_add_(0, gt, torch.ones_like(gt))
    pos = matched_idxs >= 0
    safe = matched_idxs.clamp(min=0)
    classes = gt_classes.index_select(0, safe)
    labels = torch.where(pos, classes, torch.full_like(classes, num_classes))
    if ignore is not None:
        labels = torch.where(ignore & ~pos, torch.full_like(labels, -1), labels)
    boxes = torch.where(pos[:, None], gt_boxes.index_select(0, safe), gt_boxes.new_zeros(()))
    return labels, boxes, positives_per_gt(matched_idxs, pos, num_gt)


class BaseAssigner(nn.Module):
    """Base class: subclasses implement :meth:`assign` for an image with at least one GT box."""

    #: True when the assigner needs the head's predictions of the image (AutoAssign, SAPD).
    prediction_aware: bool = False

    def __init__(
        self, *, num_classes: int, chunk_pairs: int = DEFAULT_CHUNK_PAIRS, box2box_transform=None
    ):
        """
        Args:
            num_classes: K, foreground classes.
            chunk_pairs: at most this many (GT, prior) candidate pairs are held at once.
            box2box_transform: how the head's box output decodes against the prior boxes, for
                the assigners that look at predicted boxes. None: the detector's own (set by
                :class:`~dense_assign.meta_arch.OneStageDetector` when it builds the assigner, so
                ``model.assigner=NAME`` decodes as the model does); an assigner used on its own
                falls back to :data:`DEFAULT_BOX_TRANSFORM`.
        """
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"assigner num_classes must be positive, got {num_classes}")
        if int(chunk_pairs) < 1:
            raise ValueError(f"assigner chunk_pairs must be >= 1, got {chunk_pairs}")
        self.num_classes = int(num_classes)
        self.chunk_pairs = int(chunk_pairs)
        self.box2box_transform = box2box_transform

    def decode_boxes(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Predicted boxes from the head's (n, 4) box outputs at (n, 4) prior boxes."""
        transform = self.box2box_transform or DEFAULT_BOX_TRANSFORM
        return transform.apply_deltas(deltas, boxes)

    def predicted_boxes(self, priors: Priors, predictions) -> PriorRows:
        """The head's decoded boxes, detached and in float32 (data for an assignment), as
        :class:`~.candidates.PriorRows`: a prior's box is decoded the first time a pair (or a
        positive) asks for it, so a sparse image decodes a handful of priors, not all."""
        deltas = predictions.deltas.detach()
        return PriorRows(
            len(priors),
            lambda idx: self.decode_boxes(
                deltas.index_select(0, idx).float(), priors.boxes.index_select(0, idx).float()
            ),
            deltas.device,
        )

    def prior_grid(self, priors: Priors):
        """The priors' :class:`~.candidates.PriorGrid`, or None (not laid out on a grid)."""
        return PriorGrid.of(priors)

    def window_pairs(self, priors: Priors, num_gt: int, windows_fn):
        """The candidate pairs in chunks of whole GTs: ``windows_fn(grid)`` (per-GT windows)
        when the priors lie on a grid, every pair otherwise."""
        grid = self.prior_grid(priors)
        if grid is None:
            windows = AllPairs(num_gt, len(priors), priors.centers.device)
        else:
            windows = windows_fn(grid)
        return pairs_in_chunks(windows, self.chunk_pairs)

    def forward(
        self,
        priors: Priors,
        gt_instances: Instances,
        predictions=None,
        image_size: Optional[Tuple[int, int]] = None,
    ) -> AssignResult:
        if len(gt_instances) == 0 or len(priors) == 0:
            return self.empty_result(priors, num_gt=len(gt_instances))
        return self.assign(priors, gt_instances, predictions=predictions, image_size=image_size)

    def assign(self, priors, gt_instances, predictions=None, image_size=None) -> AssignResult:
        raise NotImplementedError

    def empty_result(self, priors: Priors, num_gt: int = 0) -> AssignResult:
        """Every prior is background: an image without GT boxes, or ``num_gt`` GTs and no priors
        (then each GT is without a positive)."""
        num = len(priors)
        device = priors.boxes.device
        return AssignResult(
            labels=torch.full((num,), self.num_classes, dtype=torch.long, device=device),
            matched_idxs=torch.full((num,), -1, dtype=torch.long, device=device),
            matched_gt_boxes=priors.boxes.new_zeros((num, 4)),
            num_gt=num_gt,
            stats={"num_gt": float(num_gt), "num_pos": 0.0, "gt_without_pos": float(num_gt)},
        )

    def result_from_matches(
        self, gt_instances: Instances, matched_idxs: Tensor, ignore: Optional[Tensor] = None
    ) -> AssignResult:
        """Build an AssignResult from per-prior GT indices (-1 = background)."""
        labels, boxes, per_gt = match_tensors(
            matched_idxs,
            gt_instances.gt_classes,
            gt_instances.gt_boxes.tensor,
            self.num_classes,
            ignore,
            from_positives=matched_idxs.device.type == "cpu",
        )
        # 0-dim tensors, not Python numbers: reading them on the host would synchronize a GPU
        num_pos = per_gt.sum().float()
        covered = (per_gt > 0).sum().float()
        return AssignResult(
            labels=labels,
            matched_idxs=matched_idxs,
            matched_gt_boxes=boxes,
            num_gt=len(gt_instances),
            stats={
                "num_gt": float(len(gt_instances)),
                "num_pos": num_pos,
                "gt_without_pos": len(gt_instances) - covered,
            },
        )

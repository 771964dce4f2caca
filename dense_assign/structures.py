"""Data structures shared by priors, assigners and losses.

Glossary (shapes are per image unless stated):
  N  images in the batch           K  foreground classes (background label is K)
  M  ground-truth boxes            R  priors over all levels, concatenated level by level
  A  priors per location           L  pyramid levels
Boxes are absolute XYXY floats. Labels follow detectron2: -1 ignore, 0..K-1 foreground, K background.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor


@dataclass
class Priors:
    """The priors (anchor points or anchor boxes) of one batch, shared by all its images.

    ``boxes`` are the reference boxes the box regression is decoded against: anchor boxes for an
    anchor-based model, or boxes of ``stride`` (times a constant) centred at the points for a point
    model. Priors are ordered level by level, and inside a level as (H, W, A), matching
    detectron2's ``DefaultAnchorGenerator`` and ``permute_to_N_HWA_K``.
    """

    boxes: Tensor  # (R, 4)
    centers: Tensor  # (R, 2)
    strides: Tensor  # (R,) float
    levels: Tensor  # (R,) int64, pyramid level index 0..L-1
    level_sizes: List[int]  # priors per level
    grid_sizes: List[Tuple[int, int]]  # (H, W) of each level's feature map
    level_strides: List[int]
    num_anchors: int  # A
    offset: float  # prior centres at (k + offset) * stride

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def level_starts(self) -> List[int]:
        """Index of the first prior of each level (the levels are concatenated in order)."""
        starts = [0]
        for n in self.level_sizes[:-1]:
            starts.append(starts[-1] + int(n))
        return starts

    def split(self, x: Tensor, dim: int = 0) -> List[Tensor]:
        """Split a tensor whose ``dim`` runs over priors into per-level pieces."""
        return list(torch.split(x, self.level_sizes, dim=dim))

    def center_columns(self) -> Tensor:
        """(2, R) ``centers`` transposed and contiguous, for gathering them by pair lists
        (:func:`~dense_assign.box_ops.take_rows`). Kept on the object, so the priors a detector
        reuses between steps pay for it once; made again when ``centers`` is replaced or changed
        in place."""
        cached = self.__dict__.get("_center_columns")
        if cached is None or cached[0] is not self.centers or cached[1] != self.centers._version:
            cached = (self.centers, self.centers._version, self.centers.t().contiguous())
            self.__dict__["_center_columns"] = cached
        return cached[2]


@dataclass
class AssignResult:
    """What an assigner decides for one image: the contract between assigners and losses.

    Attributes:
        labels: (R,) int64 in {-1 ignore, 0..K-1 foreground, K background}.
        matched_idxs: (R,) int64, index of the GT a prior is matched to, in [0, M); -1 where the
            prior has no GT (background, or ignored with no GT).
        matched_gt_boxes: (R, 4) XYXY box of the matched GT (zeros where ``matched_idxs`` is -1).
        num_gt: M, the GT boxes of the image.
        cls_targets: optional (R,) soft classification targets: the value a positive's class
            channel trains towards (an IoU or an alignment score, as VFNet, TOOD, RTMDet and GFL
            train against), read only at positives; 1 for every positive where absent.
        loss_weights: optional (R,) weights of the priors' classification and box losses (1 where
            absent; 0 drops a prior): SAPD's soft point x level weights.
        pairwise: optional dict of pair-list tensors for set-based losses: AutoAssign.
        losses: optional loss terms of the assigner's own learnable parts (e.g. SAPD's feature
            selection net); the detector averages each over the images of the batch and adds it
            to the loss dict.
        stats: numbers for logging only (put into detectron2's EventStorage by the detector):
            Python numbers or 0-dim tensors, which are read with ``float()`` only when logged (on
            a GPU inside a training step, with the losses: :mod:`dense_assign.deferred`). Losses
            never read them.
    """

    labels: Tensor
    matched_idxs: Tensor
    matched_gt_boxes: Tensor
    num_gt: int = 0
    cls_targets: Optional[Tensor] = None
    loss_weights: Optional[Tensor] = None
    pairwise: Optional[Dict[str, Tensor]] = None
    losses: Optional[Dict[str, Tensor]] = None
    stats: Dict[str, Union[float, Tensor]] = field(default_factory=dict)

    def pos_mask(self, num_classes: int) -> Tensor:
        return (self.labels >= 0) & (self.labels != num_classes)

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class DensePredictions:
    """Head outputs of a batch, flattened over levels: ``(N, R, C)`` tensors."""

    logits: Tensor  # (N, R, K)
    deltas: Tensor  # (N, R, 4)
    quality: Optional[Tensor]  # (N, R, 1) or None
    features: List[Tensor]  # per-level FPN features (N, C, H, W), for assigners that pool them

    def image(self, i: int) -> "DensePredictions":
        return DensePredictions(
            logits=self.logits[i],
            deltas=self.deltas[i],
            quality=None if self.quality is None else self.quality[i],
            features=[f[i : i + 1] for f in self.features],
        )


def positives_per_gt(matched_idxs: Tensor, positive: Tensor, num_gt: int) -> Tensor:
    """(M,) int64: how many priors with ``positive`` True are matched to each GT (``matched_idxs``
    in [0, M) there). With ``scatter_add`` rather than ``bincount``, whose CUDA version reads its
    maximum on the host."""
    slot = torch.where(positive, matched_idxs + 1, torch.zeros_like(matched_idxs))
    counts = slot.new_zeros(num_gt + 1).scatter_add_(0, slot, positive.long())
    return counts[1:]

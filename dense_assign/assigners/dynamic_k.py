"""Dynamic-k matching, the selection step SimOTA (YOLOX) and the dynamic soft labels (RTMDet) share.

Given candidate (GT, prior) pairs, each with an IoU (the prior's *predicted* box with the GT) and a
cost (docs/methods.md, "SimOTA and dynamic soft labels"):

1. every GT gets k = max(1, int(sum of its q largest candidate IoUs)) (q = 10 in YOLOX, 13 in RTMDet);
2. every GT takes its k candidates of lowest cost (ties: the lowest prior index);
3. a prior taken by several GTs keeps the one of lowest cost (ties: the lowest GT index);

and the positives train towards the IoU of their predicted box with their GT (soft targets,
``AssignResult.cls_targets``).

Everything works on flat pair lists, vectorized over GTs: "the q largest" (:func:`dynamic_ks`)
and "the k lowest" (:func:`~.candidates.smallest_per_gt`) of a GT come from a ``topk`` over its
row of a padded block (:class:`~.candidates.GTRuns`: each GT's pairs one row, no sort), and sums
per GT are scatter-adds. Steps 1-2 read only the pairs of one GT, so chunks of whole GTs
(:meth:`~.base.BaseAssigner.window_pairs`) are matched one after the other; step 3 is a running
per-prior minimum of the cost over the chunks (:class:`~.candidates.BestPerPrior` on -cost).
Memory: one chunk of pairs and a few (R,) and (M,) buffers; nothing is (M, R) or (M, R, K).

:class:`DynamicKAssigner` is the shared skeleton of the two prediction-aware assigners: decode the
head's boxes, walk the candidate pairs, match, build the result. A subclass supplies the candidate
windows, the candidate rule on pairs and the cost of a pair (:mod:`.simota`, :mod:`.dsl`).
"""

import math
from typing import Dict, Iterable, Tuple

import torch
from torch import Tensor

from ..box_ops import pair_iou, take_rows
from ..structures import AssignResult, DensePredictions, Priors
from .base import BaseAssigner
from .candidates import BestPerPrior, GTRuns, PriorGrid, PriorRows, Windows, smallest_per_gt

#: (priors x classes) elements of one block when a per-prior sum over classes is computed
#: (:func:`class_sums`): 16 MB of float32 per temporary.
CLASS_SUM_BLOCK = 1 << 22


# ------------------------------------------------------------------------------ pair-list steps
def sortable(values: Tensor) -> Tensor:
    """int64 keys in the order of the float64 values of ``values`` (no NaN): the IEEE bit
    patterns, with the magnitude bits of negative numbers flipped. Sorting them is exact and
    several times faster on the CPU than sorting the floats."""
    bits = values.double().contiguous().view(torch.int64)
    return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)


def rank_within_gt(sorted_gt: Tensor, num_gt: int) -> Tensor:
    """(P,) position of each pair among its GT's pairs, for pairs sorted by GT."""
    counts = torch.zeros(num_gt, dtype=torch.long, device=sorted_gt.device)
    counts.scatter_add_(0, sorted_gt, torch.ones_like(sorted_gt))
    starts = counts.cumsum(0) - counts
    return torch.arange(len(sorted_gt), device=sorted_gt.device) - starts.index_select(0, sorted_gt)


def dynamic_ks(gt_idx: Tensor, ious: Tensor, num_gt: int, topq: int, cost=None):
    """(M,) int64: k = max(1, int(sum of the ``topq`` largest IoUs of the GT's pairs)); 1 for a
    GT without pairs (NaN IoUs count as 0). With ``cost``, also (M,) float64 bounds: a cost that
    the GT's k-th lowest cost does not exceed (the largest cost among k of its pairs of highest,
    nonzero IoU: k <= the number of its nonzero IoUs when their sum is >= 1), +inf where k is 1
    for want of any overlap.

    Each GT's q largest IoUs come from a ``topk`` over its row of a padded block
    (:class:`~.candidates.GTRuns`), not from a sort of the pairs (issue #20: the sort was the
    largest operator of SimOTA's profile at M = 1000, README); they are summed in float64 from
    the largest down, so the sum, and its truncation, do not depend on how the pairs were
    listed."""
    device = gt_idx.device
    ks = torch.ones(num_gt, dtype=torch.long, device=device)
    bound = torch.full((num_gt,), math.inf, dtype=torch.float64, device=device)
    runs = GTRuns(gt_idx, num_gt)
    v = runs.ordered(ious.float().nan_to_num(nan=0.0).clamp(0.0, 1.0))
    cost = None if cost is None else runs.ordered(cost)
    for rows, idx, valid in runs.blocks() if topq > 0 else ():
        block = v.index_select(0, idx.view(-1)).view(idx.shape).masked_fill_(~valid, 0.0)
        top, at = block.topk(min(topq, idx.shape[1]), dim=1)  # descending
        k = torch.floor(top.double().cumsum(dim=1)[:, -1]).long().clamp(min=1)
        ks.index_copy_(0, rows, k)
        if cost is not None:
            first = (torch.arange(top.shape[1], device=device) < k[:, None]) & (top > 0)
            at_cost = cost.index_select(0, idx.gather(1, at).view(-1))
            largest = at_cost.view(at.shape).double().masked_fill(~first, -math.inf).amax(dim=1)
            enough = first.sum(dim=1) >= k
            bound.index_copy_(0, rows, torch.where(enough, largest, math.inf))
    return ks if cost is None else (ks, bound)


def lowest_cost_k(gt_idx: Tensor, cost: Tensor, ks: Tensor) -> Tensor:
    """Indices (ascending) of the pairs each GT takes: its ``ks[gt]`` pairs of lowest cost, and
    among equal costs the earliest in the list; the pairs of a GT come in ascending prior order
    (as :meth:`~.candidates.Windows.pairs` and :class:`~.candidates.AllPairs` give them), so
    that is the lowest prior index (:func:`~.candidates.smallest_per_gt`)."""
    return smallest_per_gt(gt_idx, cost, ks, len(ks)).nonzero().squeeze(1)


def match_dynamic_k(
    chunks: Iterable[Tuple[Tensor, Tensor, Tensor, Tensor]],
    num_gt: int,
    num_priors: int,
    topq: int,
    device,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Dynamic-k matching (steps 1-3 of the module doc) over ``chunks`` of candidate pairs
    ``(gt_idx, prior_idx, iou, cost)``, each chunk holding every candidate of its GTs, those of a
    GT in ascending prior order.

    Returns ((R,) matched GT per prior, -1 for none; (M,) k per GT; (M,) bool, whether the GT
    has a candidate)."""
    best = BestPerPrior(num_priors, device, torch.float64)
    ks = torch.ones(num_gt, dtype=torch.long, device=device)
    has = torch.zeros(num_gt, dtype=torch.bool, device=device)
    for gt_idx, prior_idx, iou, cost in chunks:
        if len(gt_idx) == 0:
            continue
        k, bound = dynamic_ks(gt_idx, iou, num_gt, topq, cost)
        ks[gt_idx] = k.index_select(0, gt_idx)
        has[gt_idx] = True
        # only the pairs within their GT's bound can be among its k lowest: sort those
        near = (cost <= bound.index_select(0, gt_idx)).nonzero().squeeze(1)
        g, c = gt_idx.index_select(0, near), cost.index_select(0, near)
        take = near.index_select(0, lowest_cost_k(g, c, k))
        best.update(prior_idx[take], gt_idx[take], -cost[take])  # lowest cost wins
    return best.result()[1], ks, has


# ------------------------------------------------------------------------------ per-prior terms
def class_sums(logits: Tensor, fn) -> Tensor:
    """(R,) float64 sum over classes of ``fn(x)`` (elementwise, on float32 logits, as the official
    codes compute their class costs), in blocks of priors so that the (R, K) temporaries stay
    bounded. The sum is taken in float64: subtracting one class's float32 term from it again (the
    GT class's, in :meth:`DynamicKAssigner.pair_cost`) leaves the other classes' sum to ~1e-16."""
    num, k = logits.shape
    out = torch.zeros(num, dtype=torch.float64, device=logits.device)
    step = max(1, CLASS_SUM_BLOCK // max(k, 1))
    for start in range(0, num, step):
        block = fn(logits[start : start + step].float())
        out[start : start + step] = block.sum(dim=1, dtype=torch.float64)
    return out


class PriorClassSums(PriorRows):
    """:func:`class_sums` of the rows of ``logits``, computed for a prior the first time a pair
    asks for it (:class:`~.candidates.PriorRows`). A row's sum does not depend on which rows are
    computed with it, so the values are :func:`class_sums`'s."""

    def __init__(self, logits: Tensor, fn):
        super().__init__(
            len(logits), lambda idx: class_sums(logits.index_select(0, idx), fn), logits.device
        )


def pair_logits(logits: Tensor, prior_idx: Tensor, classes: Tensor) -> Tensor:
    """(P,) ``logits[prior_idx, classes]`` through one flat ``index_select`` (several times faster
    on the CPU than advanced indexing)."""
    flat = prior_idx * logits.shape[1] + classes
    return logits.reshape(-1).index_select(0, flat)


# ------------------------------------------------------------------------------ the skeleton
class DynamicKAssigner(BaseAssigner):
    """Prediction-aware assignment by dynamic-k matching on candidate pairs (see module doc).

    Subclasses implement :meth:`candidate_windows` (per GT and level, a pixel rectangle holding
    every candidate's centre), :meth:`candidates` (the exact rule on pairs), :meth:`prior_terms`
    (per-prior values the cost reads) and :meth:`pair_cost`."""

    prediction_aware = True

    def __init__(self, *, num_classes: int, topq: int, box2box_transform=None, **kwargs):
        """
        Args:
            topq: the q largest IoUs of a GT that sum to its k.
            box2box_transform, chunk_pairs: see :class:`~.base.BaseAssigner` (None: the
                detector's box decoding).
        """
        super().__init__(num_classes=num_classes, box2box_transform=box2box_transform, **kwargs)
        if int(topq) < 1:
            raise ValueError(f"model.assigner's top-q for dynamic k must be >= 1, got {topq}")
        self.topq = int(topq)

    # -------------------------------------------------------------- what subclasses supply
    def candidate_windows(self, grid: PriorGrid, gt_boxes: Tensor) -> Windows:
        raise NotImplementedError

    def candidates(self, priors: Priors, gt_boxes: Tensor, gt_idx: Tensor, prior_idx: Tensor):
        """((P,) bool: the pair is a candidate, extra per-pair values for :meth:`pair_cost`)."""
        raise NotImplementedError

    def prior_terms(self, predictions: DensePredictions) -> Dict[str, Tensor]:
        raise NotImplementedError

    def pair_cost(
        self, priors, terms, gt_boxes, gt_classes, gt_idx, prior_idx, iou, extra
    ) -> Tensor:
        """(P,) float64 cost of candidate pairs."""
        raise NotImplementedError

    # -------------------------------------------------------------- assignment
    def pairs(self, priors, gt_boxes, gt_classes, pred_boxes, terms):
        """Chunks of candidate pairs with their IoU and cost, for :func:`match_dynamic_k`."""
        windows = self.window_pairs(
            priors, len(gt_boxes), lambda grid: self.candidate_windows(grid, gt_boxes)
        )
        for gt_idx, prior_idx in windows:
            keep, extra = self.candidates(priors, gt_boxes, gt_idx, prior_idx)
            keep = keep.nonzero().squeeze(1)
            gt_idx, prior_idx = gt_idx.index_select(0, keep), prior_idx.index_select(0, keep)
            extra = {name: value.index_select(0, keep) for name, value in extra.items()}
            iou = pair_iou(pred_boxes.take(prior_idx), take_rows(gt_boxes.t().contiguous(), gt_idx))
            iou = iou.nan_to_num(nan=0.0)
            cost = self.pair_cost(
                priors, terms, gt_boxes, gt_classes, gt_idx, prior_idx, iou, extra
            )
            # a non-finite cost (non-finite head outputs) ranks last instead of breaking the sorts
            yield gt_idx, prior_idx, iou, cost.nan_to_num(nan=math.inf).clamp(max=1e300)

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        if predictions is None:
            raise ValueError(
                f"{type(self).__name__} is prediction-aware: call it with the image's predictions"
            )
        # the costs in float32 / float64 as written, also inside an AMP step
        device_type = priors.boxes.device.type
        if device_type not in ("cpu", "cuda"):
            return self._assign(priors, gt_instances, predictions)
        with torch.autocast(device_type=device_type, enabled=False):
            return self._assign(priors, gt_instances, predictions)

    def _assign(self, priors: Priors, gt_instances, predictions) -> AssignResult:
        gt_boxes = gt_instances.gt_boxes.tensor
        gt_classes = gt_instances.gt_classes
        pred_boxes = self.predicted_boxes(priors, predictions)
        terms = self.prior_terms(predictions)
        matched, ks, has = match_dynamic_k(
            self.pairs(priors, gt_boxes, gt_classes, pred_boxes, terms),
            len(gt_boxes),
            len(priors),
            self.topq,
            gt_boxes.device,
        )
        return self.soft_label_result(gt_instances, matched, pred_boxes, ks, has)

    def soft_label_result(self, gt_instances, matched, pred_boxes, ks, has) -> AssignResult:
        """The hard labels of ``matched``, with the IoU of each positive's predicted box with its
        GT as its soft classification target (0 elsewhere, never read)."""
        result = self.result_from_matches(gt_instances, matched)
        pos = (matched >= 0).nonzero().squeeze(1)
        gt = gt_instances.gt_boxes.tensor.index_select(0, matched.index_select(0, pos))
        iou = pair_iou(pred_boxes.take(pos), gt).nan_to_num(nan=0.0)
        result.cls_targets = iou.new_zeros(len(matched)).index_copy_(0, pos, iou)
        num_has = has.sum()
        result.stats["dynamic_k_mean"] = (ks * has).sum().float() / num_has.clamp(min=1).float()
        result.stats["pos_iou_mean"] = iou.sum() / max(len(pos), 1)
        return result

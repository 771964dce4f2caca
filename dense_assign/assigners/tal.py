"""TOOD's task-aligned assignment (TAL).

Paper: "TOOD: Task-aligned One-stage Object Detection" (Feng, Zhong, Gao, Scott, Huang, ICCV 2021,
arXiv:2108.07755), Sec. 3.2; the facts this file relies on are in docs/methods.md, "TOOD
task-aligned assignment".

Rule: each (GT, prior) pair gets the alignment metric t = s^alpha u^beta (s: the predicted
probability of the GT's class at the prior, u: the IoU of the prior's decoded predicted box with
the GT; alpha = 1, beta = 6); per GT, the ``topk`` = 13 priors of highest t among those whose centre
lies inside the GT are positives, and a prior claimed by several GTs goes to the GT it overlaps
most (highest u). A positive's soft classification target is t normalized per GT,
t_hat = t / max(t) * max(u), both maxima over that GT's positives (``AssignResult.cls_targets``).

Differences from the paper and the official code (mmdetection's ``TaskAlignedAssigner`` and
``TOODHead``):

- Candidates: the paper takes the m = 13 priors of largest t per GT; mmdetection takes them over
  *all* priors, then drops those whose centre is not inside the GT (a GT can end with fewer than k
  positives). Here, by default (``topk_over="inside"``, this project's rule), the top k among the
  priors inside the GT; ``topk_over="all"`` gives mmdetection's order.
- t is handled as log t = alpha log s + beta log u. A pair is a candidate when t > 0 as in
  mmdetection, i.e. when the predicted box overlaps the GT (u > 0); with beta = 6 a float32 t
  underflows to 0 for u below about 1e-7, which would drop such pairs, and the log keeps their
  order. The normalization divides by the exact maximum; mmdetection adds 1e-7 to
  it, which shrinks t_hat where all of a GT's t are small.
- Equal metrics rank by the lowest prior index; a prior claimed by several GTs with the same IoU
  goes to the lowest GT index (torch's ``topk`` / ``max`` leave the first to the implementation).

"Inside" is min(l, t, r, b) > 0.01 for the prior centre, as the official code (and ATSS).

Computation (no (M, R) matrix, no loop over GTs): the candidate (GT, prior) pairs come from per-GT
windows of the prior grid (:mod:`~dense_assign.assigners.candidates`): the GT box on every level
(``"inside"``), or the GT box widened by the level's largest predicted-box extents, the priors
whose predicted box can overlap it (``"all"``). On those pairs: the inside test, u, s and log t;
the per-GT top k without a sort, each GT's pairs a row of a padded block
(:func:`~.candidates.smallest_per_gt`); the GT of highest u per prior with
:class:`~.candidates.BestPerPrior`; t_hat from per-GT maxima by ``scatter_reduce``. Pairs are
processed in chunks of whole GTs (``chunk_pairs``); only the selected pairs (at most k per GT) are
kept across chunks. The tests compare the result with a dense reference on random, edge-case and
crowded inputs (``tests/assigners/test_tal.py``).
"""

import math
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..box_ops import inside, pair_iou, take_rows
from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, Priors
from .base import BaseAssigner
from .candidates import AllPairs, BestPerPrior, PriorRows, pairs_in_chunks, smallest_per_gt

#: Positives per GT, m (TOOD Sec. 3.2; official config topk = 13).
TAL_TOPK = 13
#: Exponent of the class score in t (TOOD Sec. 3.2; official config alpha = 1).
TAL_ALPHA = 1.0
#: Exponent of the IoU in t (TOOD Sec. 3.2; official config beta = 6).
TAL_BETA = 6.0
#: Minimum distance of a positive's centre inside its GT (official assigner: 0.01).
INSIDE_EPS = 0.01
#: Where the top k is taken: among the priors inside the GT (this project's default), or over
#: all priors and then filtered by the inside test (mmdetection).
TOPK_OVER = ("inside", "all")


@ASSIGNER_REGISTRY.register()
class TaskAlignedAssigner(BaseAssigner):
    """TOOD's task-aligned assignment (see module doc)."""

    prediction_aware = True

    def __init__(
        self,
        *,
        num_classes: int,
        topk: int = TAL_TOPK,
        alpha: float = TAL_ALPHA,
        beta: float = TAL_BETA,
        topk_over: str = "inside",
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            topk: k, positives per GT at most.
            alpha, beta: exponents of the class probability and of the IoU in t (>= 0).
            topk_over: "inside" (the top k among the priors whose centre is inside the GT) or
                "all" (the top k over every prior, then the inside test; mmdetection).
            box2box_transform, chunk_pairs: see :class:`BaseAssigner` (None: the detector's box
                decoding).
        """
        super().__init__(num_classes=num_classes, box2box_transform=box2box_transform, **kwargs)
        if int(topk) < 1:
            raise ValueError(f"model.assigner.topk must be >= 1, got {topk}")
        for key, value in (("alpha", alpha), ("beta", beta)):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"model.assigner.{key} must be a finite value >= 0, got {value}")
        if topk_over not in TOPK_OVER:
            raise ValueError(
                f"model.assigner.topk_over={topk_over!r}; allowed: {', '.join(TOPK_OVER)}"
            )
        self.topk = int(topk)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.topk_over = topk_over

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, topk={self.topk}, alpha={self.alpha}, "
            f"beta={self.beta}, topk_over={self.topk_over}"
        )

    # ------------------------------------------------------------------------- entry
    def forward(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        if predictions is None and len(gt_instances) > 0 and len(priors) > 0:
            raise ValueError(
                "TaskAlignedAssigner is prediction-aware: call it with the image's predictions"
            )
        return super().forward(priors, gt_instances, predictions=predictions, image_size=image_size)

    def empty_result(self, priors: Priors, num_gt: int = 0) -> AssignResult:
        """All background, with soft targets (0), so a loss that weights by them finds them."""
        result = super().empty_result(priors, num_gt)
        result.cls_targets = priors.boxes.new_zeros(len(priors))
        return result

    # ------------------------------------------------------------------------- pair values
    def log_metric(self, logits: Tensor, ious: Tensor) -> Tensor:
        """log t = alpha log s + beta log u, elementwise, for class logits (s = sigmoid) and IoUs;
        -inf where t = 0 (u = 0 with beta > 0). A zero exponent drops its term (s^0 = u^0 = 1)."""
        out = torch.zeros_like(ious)
        if self.alpha != 0:
            out = out + self.alpha * F.logsigmoid(logits)
        if self.beta != 0:
            out = out + self.beta * torch.log(ious)
        return out

    # ------------------------------------------------------------------------- candidates
    def candidate_pairs(
        self, priors: Priors, gt_boxes: Tensor, pred_boxes: Optional[Tensor]
    ) -> Iterator[Tuple[Tensor, Tensor]]:
        """Chunks of whole GTs of (gt_idx, prior_idx) pairs, a superset of the pairs the rule can
        select: the priors whose centre window covers the GT box on every level ("inside"), or
        whose predicted box can overlap the GT ("all"; every pair when that bound is unusable).
        ``pred_boxes`` (R, 4), every prior's decoded box, is read by "all" only."""
        num_gt, num_priors = len(gt_boxes), len(priors)
        L = priors.num_levels
        if self.topk_over == "inside":
            return self.window_pairs(
                priors,
                num_gt,
                lambda grid: grid.windows(
                    gt_boxes[:, None, :2].expand(-1, L, -1),
                    gt_boxes[:, None, 2:].expand(-1, L, -1),
                ),
            )
        grid = self.prior_grid(priors)
        windows = None
        # with beta = 0 a pair needs no overlap; non-finite boxes give no usable extents
        if grid is not None and self.beta > 0 and bool(torch.isfinite(pred_boxes).all()):
            centers = priors.centers
            ext = torch.cat(
                [centers - pred_boxes[:, :2], pred_boxes[:, 2:] - centers], dim=1
            ).double()  # (cx - x0, cy - y0, x1 - cx, y1 - cy) per prior
            per_level = ext.new_full((L, 4), -math.inf)
            per_level.scatter_reduce_(0, priors.levels[:, None].expand(-1, 4), ext, reduce="amax")
            gt = gt_boxes.double()
            # a predicted box [c - e0, c + e2] meets [x0, x1] only if x0 - e2 < c < x1 + e0
            windows = grid.windows(
                gt[:, None, :2] - per_level[None, :, 2:], gt[:, None, 2:] + per_level[None, :, :2]
            )
            if windows.num_pairs() > num_gt * num_priors:
                windows = None
        if windows is None:
            windows = AllPairs(num_gt, num_priors, gt_boxes.device)
        return pairs_in_chunks(windows, self.chunk_pairs)

    def select(
        self,
        priors: Priors,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        logits: Tensor,
        pred_boxes: PriorRows,
        gt_idx: Tensor,
        prior_idx: Tensor,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The pairs of one chunk (whole GTs) that are among their GT's top k, with their IoU u
        and log t: (gt_idx, prior_idx, u, log t) of the selected pairs."""
        gt_columns = gt_boxes.t().contiguous()
        centers = take_rows(priors.center_columns(), prior_idx)
        in_box = inside(centers, take_rows(gt_columns, gt_idx), INSIDE_EPS)
        if self.topk_over == "inside":
            keep = in_box.nonzero().squeeze(1)
            gt_idx, prior_idx = _take(keep, gt_idx, prior_idx)
            in_box = None
        boxes = take_rows(gt_columns, gt_idx)
        ious = pair_iou(pred_boxes.take(prior_idx), boxes)
        flat = prior_idx * self.num_classes + gt_classes.index_select(0, gt_idx)
        log_t = self.log_metric(logits.reshape(-1).index_select(0, flat), ious)
        # the top k among the pairs with t > 0: those with t = 0 (or NaN) rank last (+inf), so
        # they are chosen only where a GT has fewer than k others, and then dropped
        chosen = smallest_per_gt(gt_idx, -log_t, self.topk, len(gt_boxes), prior_idx)
        chosen &= log_t > -math.inf  # t > 0; drops NaN too
        if in_box is not None:  # "all": the inside test after the top k
            chosen &= in_box
        return _take(chosen.nonzero().squeeze(1), gt_idx, prior_idx, ious, log_t)

    # ------------------------------------------------------------------------- assignment
    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        gt_classes = gt_instances.gt_classes
        num_gt, num_priors = len(gt_boxes), len(priors)
        device = gt_boxes.device
        # the predictions are data here: no gradient flows through the assignment
        logits = predictions.logits.detach().float()
        # decoded for the priors of the pairs only ("inside"), or for every prior ("all", whose
        # candidate windows read every prior's box)
        pred_boxes = self.predicted_boxes(priors, predictions)
        every = None
        if self.topk_over == "all":
            every = pred_boxes.take(torch.arange(num_priors, device=device))
        empty = torch.zeros(0, dtype=torch.long, device=device)
        zero = logits.new_zeros(0)
        picked = [[empty], [empty], [zero], [zero]]
        num_pairs = 0
        for g, p in self.candidate_pairs(priors, gt_boxes, every):
            num_pairs += len(g)
            for part, values in zip(
                picked, self.select(priors, gt_boxes, gt_classes, logits, pred_boxes, g, p)
            ):
                part.append(values)
        g, p, u, log_t = (torch.cat(part) for part in picked)

        # a prior selected by several GTs: the GT of highest IoU (ties: lowest GT index)
        best = BestPerPrior(num_priors, device, u.dtype)
        best.update(p, g, u)
        matched = best.result()[1]
        result = self.result_from_matches(gt_instances, matched)

        # soft targets: per GT, t / max t * max u over the GT's positives
        won = (matched.index_select(0, p) == g).nonzero().squeeze(1)
        g, p, u, log_t = g[won], p[won], u[won], log_t[won]
        max_log_t = log_t.new_full((num_gt,), -math.inf).scatter_reduce(0, g, log_t, reduce="amax")
        max_u = u.new_zeros(num_gt).scatter_reduce(0, g, u, reduce="amax")
        t_hat = torch.exp(log_t - max_log_t.index_select(0, g)) * max_u.index_select(0, g)
        cls_targets = u.new_zeros(num_priors)
        cls_targets[p] = t_hat
        result.cls_targets = cls_targets
        count = max(len(p), 1)
        result.stats.update(
            {
                "num_pairs": float(num_pairs),
                "soft_target_mean": t_hat.sum() / count,
                "pos_pred_iou_mean": u.sum() / count,
            }
        )
        return result


def _take(idx: Tensor, *tensors: Tensor) -> Tuple[Tensor, ...]:
    """Rows ``idx`` of each tensor (``index_select``: faster than advanced indexing on a CPU)."""
    return tuple(t.index_select(0, idx) for t in tensors)

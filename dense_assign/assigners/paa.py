"""PAA: probabilistic anchor assignment.

Paper: "Probabilistic Anchor Assignment with IoU Prediction for Object Detection" (Kim & Lee, ECCV
2020, arXiv:2007.08103); official code kkhoot/PAA (``paa_core/modeling/rpn/paa/loss.py``,
``compute_paa``) and mmdetection's ``PAAHead`` (``get_pos_loss``, ``paa_reassign``,
``gmm_separation_scheme``). The facts this file relies on are in docs/methods.md, "PAA".

Rule: a max-IoU assignment at IoU 0.1 (with low-quality matches) gives every GT its anchors; per
GT and pyramid level the 9 of them with the lowest anchor score (the anchor's own loss for the GT:
focal loss over the classes + 1.3 x GIoU loss of its predicted box) are the GT's candidates. A
two-component 1-D Gaussian mixture is fitted to the candidates' scores; sorted by score, the
candidates up to the one that the low-score component explains best are positives, the rest and
every other anchor are background.

Details, as the official code and mmdetection (docs/methods.md, "PAA"):

- Initial assignment: :class:`~.max_iou.MaxIoUAssigner` with thresholds (0.1, 0.1) and low-quality
  matches (mmdetection ``MaxIoUAssigner(pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0)``; the
  official ``Matcher(0.1, 0.1, True)``), on its candidate windows: each anchor has one GT, so the
  candidate sets of the GTs are disjoint and a positive has a single GT (the one of highest IoU).
- Candidates: per GT and level, the ``topk`` anchors of *lowest score* among the anchors assigned
  to it (both codes: ``topk(..., largest=False)`` on the losses; not the top 9 by IoU, which the
  issue text said), ``topk`` = 9 per level whatever the number of anchors per location.
- Score: the focal loss (alpha 0.25, gamma 2) of the class logits against the one-hot of the GT
  class, summed over the classes, plus ``box_weight`` x the GIoU loss of the decoded predicted box
  (mmdetection's ``loss_bbox`` weight 1.3; the official code adds the GIoU unweighted), from the
  detached predictions; a predicted box with x2 < x1 (y2 < y1) is collapsed to zero width (height),
  as the official GIoU does.
- The mixture, per GT with at least 2 candidates: means initialized at the smallest and the
  largest score, precisions 1, weights 0.5 each; scikit-learn's EM (``GaussianMixture`` defaults:
  ``tol=1e-3`` on the change of the mean log-likelihood, ``reg_covar=1e-6``, ``max_iter=100``).
- Separation (the official code, Fig. 3 (c) of the paper): each candidate goes to the component of
  highest weighted likelihood (ties to component 0, the low-score one); among the component-0
  candidates, the one of highest log-likelihood (ties: the lowest score) bounds the positives: every
  candidate sorted before it, and itself, is positive. Without a component-0 candidate every
  candidate is positive (official: "for high recall"). A GT with a single candidate keeps it as its
  positive (the official code does the same).

Differences from the official code and mmdetection:

- The mixture is fitted for all GTs at once (padded (M, C) score lists with a mask, C <= 9 x levels;
  per-GT convergence: a GT whose log-likelihood changed by less than ``tol`` keeps its parameters
  while the others iterate), in float64, the variance as sum(resp (x - mean)^2) / n_k + reg_covar
  (scikit-learn's ``covariance_type="full"``, the official code's; mmdetection uses "diag", the
  same model in one dimension, computed as E[x^2] - mean^2). Both codes call scikit-learn once per
  GT in a Python loop, on float32 scores.
- mmdetection's separation keeps the component-0 candidates up to the bound (a component-1
  candidate sorted before it becomes negative), gives no positive to a GT without a component-0
  candidate, and none to a GT with a single candidate (``if len(pos_inds_gmm) < 2: continue``);
  mmdetection's low-quality matches give an anchor to the GT it is the best anchor of (the last such
  GT), where this project (as detectron2 and the official code) keeps the anchor's own best GT.
- Ties are broken deterministically: equal scores rank by the lowest prior index (the codes'
  ``topk`` and ``sort`` leave it to the implementation).
- Scores that are not finite (non-finite head outputs) or above 1e8 count as 1e8.

With ``iou_targets=True`` the result carries, for each positive, the IoU of its predicted box with
its GT as ``AssignResult.cls_targets``: the PAA config weights the GIoU loss by it and divides by
its sum (``model.loss.box_weighting="cls_target"``, the official and mmdetection box loss), with
``model.loss.use_cls_targets=False`` so that the class channels still train towards 1.

Computation: the max-IoU step works on per-GT candidate windows (:mod:`.candidates`); everything
after it works on the (GT, anchor) pairs it made positive, at most one per anchor: O(R) memory, no
(M, R) tensor, no loop over GTs (loops over EM iterations and blocks of pairs only).
"""

import math
from typing import NamedTuple

import torch
from fvcore.nn import giou_loss, sigmoid_focal_loss
from torch import Tensor

from ..box_ops import pair_iou
from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, DensePredictions, Priors
from .base import BaseAssigner
from .dynamic_k import CLASS_SUM_BLOCK, rank_within_gt, sortable
from .max_iou import MaxIoUAssigner

#: Candidates per GT and pyramid level (official ``MODEL.PAA.TOPK = 9``;
#: mmdetection ``topk=9``).
PAA_TOPK = 9
#: IoU of the initial max-IoU assignment (official ``MODEL.PAA.IOU_THRESHOLD = 0.1``; mmdetection
#: ``pos_iou_thr = neg_iou_thr = 0.1``).
IOU_THRESHOLD = 0.1
#: Focal loss of the score (RetinaNet's alpha 0.25, gamma 2; both codes' ``loss_cls``).
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
#: Weight of the GIoU loss in the score (mmdetection ``GIoULoss(loss_weight=1.3)``, which its
#: ``get_pos_loss`` includes; the official code adds the GIoU loss with weight 1).
BOX_WEIGHT = 1.3
#: scikit-learn ``GaussianMixture`` defaults, which both codes use: EM iterations at most, tolerance
#: on the change of the mean log-likelihood, variance floor.
GMM_MAX_ITER = 100
GMM_TOL = 1e-3
GMM_REG_COVAR = 1e-6
#: Initial mixture (both codes): weights 0.5 each, precisions 1, means at the min and max score.
GMM_WEIGHT_INIT = 0.5
GMM_PRECISION_INIT = 1.0
#: Scores are clamped at this value (a non-finite score counts as it too), so that squares in the
#: EM stay finite.
MAX_SCORE = 1e8

_LOG_2PI = math.log(2 * math.pi)
# scikit-learn adds 10 x the float64 machine epsilon to each component's responsibility sum
_NK_EPS = 10 * torch.finfo(torch.float64).eps


# ------------------------------------------------------------------------------ the mixture
class GaussianMixtureFit(NamedTuple):
    """Per-row two-component 1-D Gaussian mixtures, (M, 2) tensors (component 0 starts at the
    smallest value), and per row the EM iterations run and whether the tolerance was met."""

    weights: Tensor
    means: Tensor
    variances: Tensor
    n_iter: Tensor  # (M,) int64
    converged: Tensor  # (M,) bool


def _weighted_log_prob(x: Tensor, weights: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """(M, C, 2) log(w_k N(x | mu_k, var_k)) of (M, C) values, written as scikit-learn does with the
    Cholesky factor of the precision: -0.5 (log 2 pi + ((x - mu) / sigma)^2) + log(1 / sigma)."""
    prec_chol = variances.rsqrt()[:, None, :]
    y = (x[..., None] - means[:, None, :]) * prec_chol
    return -0.5 * (_LOG_2PI + y * y) + torch.log(prec_chol) + torch.log(weights)[:, None, :]


def fit_gaussian_mixture(
    x: Tensor,
    mask: Tensor,
    max_iter: int = GMM_MAX_ITER,
    tol: float = GMM_TOL,
    reg_covar: float = GMM_REG_COVAR,
) -> GaussianMixtureFit:
    """Fit a two-component 1-D Gaussian mixture to the valid values of every row of ``x`` at once
    (rows with at least 2 valid values; the others keep their initial mixture).

    scikit-learn's EM with its stopping rule, per row: each iteration is an E-step (the mean
    log-likelihood of the row under the current mixture and the responsibilities), an M-step (new
    weights, means, variances + ``reg_covar``), then the row stops when the mean log-likelihood
    changed by less than ``tol`` since the previous iteration (never at the first). A stopped row
    keeps its parameters while the others iterate, up to ``max_iter`` iterations.

    Args:
        x: (M, C) float64 values (any value where ``mask`` is False).
        mask: (M, C) bool, the valid values.
    """
    x = x.double()
    xm = torch.where(mask, x, torch.zeros_like(x))
    n = mask.sum(dim=1)
    count = n.clamp(min=1).double()
    lo = torch.where(mask, x, torch.full_like(x, math.inf)).amin(dim=1)
    hi = torch.where(mask, x, torch.full_like(x, -math.inf)).amax(dim=1)
    rows = len(x)
    means = torch.stack([lo, hi], dim=1)
    means = torch.where(n[:, None] > 0, means, torch.zeros_like(means))
    weights = torch.full((rows, 2), GMM_WEIGHT_INIT, dtype=torch.float64, device=x.device)
    variances = torch.full_like(weights, 1.0 / GMM_PRECISION_INIT)
    n_iter = torch.zeros(rows, dtype=torch.long, device=x.device)
    lower = torch.full((rows,), -math.inf, dtype=torch.float64, device=x.device)
    active = n >= 2
    for it in range(1, max_iter + 1):
        # the rows still iterating, gathered: most GTs stop after a few iterations
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        xa, ma = xm.index_select(0, idx), mask.index_select(0, idx)
        # E-step on the current mixture
        wlp = _weighted_log_prob(
            xa,
            weights.index_select(0, idx),
            means.index_select(0, idx),
            variances.index_select(0, idx),
        )
        log_norm = torch.logsumexp(wlp, dim=2)  # (m, C)
        resp = torch.exp(wlp - log_norm[..., None]) * ma[..., None]
        bound = (log_norm * ma).sum(dim=1) / count.index_select(0, idx)
        # M-step
        nk = resp.sum(dim=1) + _NK_EPS  # (m, 2)
        new_means = (resp * xa[..., None]).sum(dim=1) / nk
        diff = xa[..., None] - new_means[:, None, :]
        weights.index_copy_(0, idx, nk / nk.sum(dim=1, keepdim=True))
        means.index_copy_(0, idx, new_means)
        variances.index_copy_(0, idx, (resp * diff * diff).sum(dim=1) / nk + reg_covar)
        n_iter.index_fill_(0, idx, it)
        # scikit-learn's stopping rule: the mean log-likelihood changed by less than tol
        change = bound - lower.index_select(0, idx)
        lower.index_copy_(0, idx, bound)
        active.index_copy_(0, idx, ~(change.abs() < tol))
    converged = (n >= 2) & ~active
    return GaussianMixtureFit(weights, means, variances, n_iter, converged)


def separate_candidates(x: Tensor, mask: Tensor, fit: GaussianMixtureFit) -> Tensor:
    """(M, C) bool, the positives of each row of candidate scores ``x`` sorted ascending (valid
    where ``mask``), by the fitted mixture (the official code's separation, module doc): the
    candidates up to and including the component-0 candidate of highest log-likelihood; every
    candidate of a row without a component-0 candidate; the candidate of a single-candidate row."""
    wlp = _weighted_log_prob(torch.where(mask, x.double(), torch.zeros_like(x.double())), *fit[:3])
    first = mask & ~(wlp[..., 1] > wlp[..., 0])  # component 0 (ties to 0, as an argmax)
    score = torch.where(first, torch.logsumexp(wlp, dim=2), torch.full_like(x.double(), -math.inf))
    cols = x.shape[1]
    col = torch.arange(cols, device=x.device).expand_as(mask)
    top = first & (score == score.amax(dim=1, keepdim=True))
    bound = torch.where(top, col, torch.full_like(col, cols)).amin(dim=1)  # the earliest maximum
    n = mask.sum(dim=1)
    bound = torch.where((n >= 2) & first.any(dim=1), bound, torch.full_like(bound, cols))
    return mask & (col <= bound[:, None])


# ------------------------------------------------------------------------------ the assigner
@ASSIGNER_REGISTRY.register()
class PAAAssigner(BaseAssigner):
    """PAA's probabilistic anchor assignment (see module doc)."""

    prediction_aware = True

    def __init__(
        self,
        *,
        num_classes: int,
        topk: int = PAA_TOPK,
        iou_threshold: float = IOU_THRESHOLD,
        focal_alpha: float = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
        box_weight: float = BOX_WEIGHT,
        max_iter: int = GMM_MAX_ITER,
        tol: float = GMM_TOL,
        reg_covar: float = GMM_REG_COVAR,
        iou_targets: bool = False,
        low_quality_gt: str = "best",
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            topk: candidates per GT and pyramid level (the lowest scores among its anchors).
            iou_threshold: IoU of the initial max-IoU assignment (foreground from it, background
                below; low-quality matches on).
            focal_alpha, focal_gamma: the focal loss of the score.
            box_weight: weight of the GIoU loss in the score.
            max_iter, tol, reg_covar: the mixture's EM (scikit-learn's meaning).
            iou_targets: give the IoU of each positive's predicted box with its GT as
                ``AssignResult.cls_targets`` (0 elsewhere), for the IoU-weighted box loss of the
                PAA config; False: no soft targets.
            low_quality_gt: the GT of a low-quality match of the initial max-IoU step: "best"
                (the anchor's own best GT, the official code's Matcher) or "claimant" (the GT it
                is a highest-IoU anchor of, mmdetection); see :mod:`.max_iou`.
            box2box_transform, chunk_pairs: see :class:`~.base.BaseAssigner` (None: the
                detector's box decoding).
        """
        super().__init__(num_classes=num_classes, box2box_transform=box2box_transform, **kwargs)
        if int(topk) < 1:
            raise ValueError(f"model.assigner.topk must be >= 1, got {topk}")
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise ValueError(f"model.assigner.iou_threshold must be in [0, 1], got {iou_threshold}")
        for key, value in (
            ("focal_gamma", focal_gamma),
            ("box_weight", box_weight),
            ("tol", tol),
            ("reg_covar", reg_covar),
        ):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"model.assigner.{key} must be a finite value >= 0, got {value}")
        if not float(focal_alpha) <= 1.0:  # a negative alpha disables the weighting (fvcore)
            raise ValueError(f"model.assigner.focal_alpha must be <= 1, got {focal_alpha}")
        if not float(reg_covar) > 0:  # a zero variance would make the precision infinite
            raise ValueError(f"model.assigner.reg_covar must be > 0, got {reg_covar}")
        if int(max_iter) < 1:
            raise ValueError(f"model.assigner.max_iter must be >= 1, got {max_iter}")
        self.topk = int(topk)
        self.iou_threshold = float(iou_threshold)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.box_weight = float(box_weight)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.reg_covar = float(reg_covar)
        self.iou_targets = bool(iou_targets)
        self.initial = MaxIoUAssigner(
            num_classes=num_classes,
            thresholds=(self.iou_threshold, self.iou_threshold),
            allow_low_quality_matches=True,
            low_quality_gt=low_quality_gt,
            chunk_pairs=self.chunk_pairs,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, topk={self.topk}, "
            f"iou_threshold={self.iou_threshold}, box_weight={self.box_weight}, "
            f"max_iter={self.max_iter}, tol={self.tol}, reg_covar={self.reg_covar}, "
            f"iou_targets={self.iou_targets}, low_quality_gt={self.initial.low_quality_gt}"
        )

    # ------------------------------------------------------------------------- entry
    def forward(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        if predictions is None and len(gt_instances) > 0 and len(priors) > 0:
            raise ValueError(
                "PAAAssigner is prediction-aware: call it with the image's predictions"
            )
        return super().forward(priors, gt_instances, predictions=predictions, image_size=image_size)

    def empty_result(self, priors: Priors, num_gt: int = 0) -> AssignResult:
        result = super().empty_result(priors, num_gt)
        if self.iou_targets:  # a loss that weights by the targets finds them in every image
            result.cls_targets = priors.boxes.new_zeros(len(priors))
        return result

    @torch.no_grad()
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        # the scores in float32 / float64 as written, also inside an AMP step
        device_type = priors.boxes.device.type
        if device_type not in ("cpu", "cuda"):
            return self._assign(priors, gt_instances, predictions)
        with torch.autocast(device_type=device_type, enabled=False):
            return self._assign(priors, gt_instances, predictions)

    # ------------------------------------------------------------------------- scores
    def anchor_scores(
        self,
        priors: Priors,
        predictions: DensePredictions,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_idx: Tensor,
        prior_idx: Tensor,
    ) -> Tensor:
        """(P,) float64 scores of (GT, prior) pairs: the focal loss of the class logits against
        the one-hot GT class summed over the classes + box_weight x the GIoU loss of the decoded
        predicted box (all detached)."""
        logits = predictions.logits.detach()
        num, k = len(prior_idx), logits.shape[1]
        cls = torch.zeros(num, dtype=torch.float64, device=logits.device)
        step = max(1, CLASS_SUM_BLOCK // max(k, 1))
        for start in range(0, num, step):
            x = logits.index_select(0, prior_idx[start : start + step]).float()
            target = torch.zeros_like(x)
            rows = torch.arange(len(x), device=x.device)
            target[rows, gt_classes.index_select(0, gt_idx[start : start + step])] = 1.0
            focal = sigmoid_focal_loss(
                x, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
            )
            cls[start : start + step] = focal.sum(dim=1, dtype=torch.float64)
        pred = self.decode_boxes(
            predictions.deltas.detach().float().index_select(0, prior_idx),
            priors.boxes.float().index_select(0, prior_idx),
        )
        finite = torch.isfinite(pred).all(dim=1)
        safe = torch.where(finite[:, None], pred, torch.zeros_like(pred))
        # an inverted box collapses to zero width / height (the official GIoU's max(x1, x2))
        safe = torch.cat([safe[:, :2], torch.maximum(safe[:, :2], safe[:, 2:])], dim=1)
        box = giou_loss(safe, gt_boxes.float().index_select(0, gt_idx), reduction="none")
        score = cls + self.box_weight * box.double()
        score = torch.where(finite, score, torch.full_like(score, MAX_SCORE))
        return score.nan_to_num(nan=MAX_SCORE).clamp(max=MAX_SCORE)

    # ------------------------------------------------------------------------- candidates
    def candidates(self, priors: Priors, gt_instances, predictions: DensePredictions):
        """Each GT's candidates sorted by score (ties: the lowest prior index), padded: ((M, C)
        float64 scores, (M, C) int64 prior indices, (M, C) bool mask of the valid entries), and
        the number of anchors of the initial assignment."""
        gt_boxes = gt_instances.gt_boxes.tensor
        num_gt, L = len(gt_boxes), priors.num_levels
        device = gt_boxes.device
        # the initial max-IoU assignment: (GT, anchor) pairs, one per anchor
        initial = self.initial(priors, gt_instances)
        prior_idx = initial.pos_mask(self.num_classes).nonzero().squeeze(1)  # ascending
        gt_idx = initial.matched_idxs.index_select(0, prior_idx)
        score = self.anchor_scores(
            priors, predictions, gt_boxes, gt_instances.gt_classes, gt_idx, prior_idx
        )
        # per (GT, level) the topk lowest scores (ties: lowest prior index), from two stable sorts
        # of the pairs (which come in ascending prior order): by score, then by (GT, level)
        group = gt_idx * L + priors.levels.index_select(0, prior_idx)
        order = torch.sort(sortable(score), stable=True).indices
        order = order.index_select(0, torch.sort(group.index_select(0, order), stable=True).indices)
        rank = rank_within_gt(group.index_select(0, order), num_gt * L)
        cand = order[rank < self.topk].sort().values  # back to ascending prior order
        # each GT's candidates by score, in the columns of its row
        order = cand.index_select(0, torch.sort(sortable(score[cand]), stable=True).indices)
        order = order.index_select(0, torch.sort(gt_idx[order], stable=True).indices)
        g = gt_idx.index_select(0, order)
        col = rank_within_gt(g, num_gt)
        cols = int(col.max()) + 1 if len(col) else 1  # (M, 1) all invalid without candidates
        scores = torch.zeros((num_gt, cols), dtype=torch.float64, device=device)
        index = torch.zeros((num_gt, cols), dtype=torch.long, device=device)
        mask = torch.zeros((num_gt, cols), dtype=torch.bool, device=device)
        scores[g, col] = score.index_select(0, order)
        index[g, col] = prior_idx.index_select(0, order)
        mask[g, col] = True
        return scores, index, mask, len(prior_idx)

    # ------------------------------------------------------------------------- assignment
    def _assign(self, priors: Priors, gt_instances, predictions) -> AssignResult:
        gt_boxes = gt_instances.gt_boxes.tensor
        num_priors = len(priors)
        scores, index, mask, num_initial = self.candidates(priors, gt_instances, predictions)
        fit = fit_gaussian_mixture(scores, mask, self.max_iter, self.tol, self.reg_covar)
        g, col = separate_candidates(scores, mask, fit).nonzero(as_tuple=True)
        chosen = index[g, col]
        matched = torch.full((num_priors,), -1, dtype=torch.long, device=gt_boxes.device)
        matched[chosen] = g  # one GT per anchor: the candidate sets are disjoint

        result = self.result_from_matches(gt_instances, matched)
        has = mask.any(dim=1)
        result.stats.update(
            {
                "initial_pos": float(num_initial),
                "candidates_mean": mask.sum().float() / has.sum().clamp(min=1).float(),
                "em_iter_max": fit.n_iter.max().float(),
            }
        )
        if self.iou_targets:
            pred = self.decode_boxes(
                predictions.deltas.detach().float().index_select(0, chosen),
                priors.boxes.float().index_select(0, chosen),
            )
            iou = pair_iou(pred, gt_boxes.float().index_select(0, g)).nan_to_num(nan=0.0)
            targets = priors.boxes.new_zeros(num_priors)
            targets[chosen] = iou.to(targets.dtype)
            result.cls_targets = targets
            result.stats["pos_iou_mean"] = targets.sum() / max(len(chosen), 1)
        return result

"""OTA: label assignment as an optimal transport problem.

Paper: "OTA: Optimal Transport Assignment for Object Detection" (Ge, Liu, Li, Yoshie, Sun, CVPR
2021, arXiv:2103.14259); official code Megvii-BaseDetection/OTA on cvpods,
``playground/detection/coco/ota.*/fcos.py`` (``get_ground_truth``, ``SinkhornDistance``) and its
configs (docs/methods.md, "OTA").

Rule: every GT is a supplier of k units, k = max(1, int(sum of its 20 largest IoUs of predicted
boxes with it over the priors in its box and centre region)); one background supplier holds the
rest (number of priors - sum of k); every prior demands one unit. Transporting a unit from a GT to
a prior costs the focal loss of the prior's class prediction against the GT's one-hot class
(summed over the classes) + 1.5 x the IoU loss -log IoU of its predicted box, + 1e6 unless the
prior's centre is inside the box (by 0.01 px) and within 2.5 strides of the box centre; from the
background it costs the focal loss against all-zero targets. The entropic transport plan
(Sinkhorn-Knopp, epsilon 0.1, 50 iterations) is rescaled so that every supplier's largest entry
is 1; each prior goes to the supplier of its largest rescaled entry (background: negative).
Positives train towards their hard one-hot class; the IoU of their predicted box (given as
``AssignResult.cls_targets``) weights their GIoU loss and is the IoU branch's target
(``configs/common/models/ota.py``).

Why the sparse computation is exact. The plan of entropic OT is pi_ij = exp((f_i + g_j - C_ij) /
eps) for row potentials f and column potentials g. A GT's pairs outside "box and centre" cost
>= 1e6 more than its pairs inside: with eps = 0.1, their entries are exp(-1e7 + ...) = 0 in
float64 (as in the official float32 code) at every iteration, as long as the finite costs differ
by less than 1e6 - 745 eps (sums of focal losses and a -log IoU of at most 24: their differences
reach 1e3 only for logits beyond +-10 over 80 classes). So the transport of a GT that has a prior in its box and centre region happens on
those pairs alone (the "in both" pairs), and only they are kept. A GT without such a prior (a box
smaller than the point spacing) pays 1e6 on every pair: a constant added to a whole row of the
cost changes nothing (its row potential absorbs it, and the rescaling divides it out), so the
official code transports it on its lowest costs over all priors; here it is transported, without
the constant, on the priors inside its box or its centre square (SimOTA's candidates), see the
differences below. (One trace of the constant stays: the official potentials start at 1, far
below 1e6, so the first column update does not see such a row; here its potential starts at
-inf.) Priors that are in no kept pair (most of the image) can only be served by the
background: in the official code each of them has g_j = b_j - f_bg (b_j its background cost) and
adds exp(-f_bg / eps) to the background's row sum, which is added here as one term
(count x that value), so the iterations equal the official dense ones (M + 1, R) on the kept
pairs and the background row, up to rounding. The tests compare with such a dense reference.

Differences from the official code:

- GTs without a prior in both their box and centre region search the priors inside the box or
  the centre square (the official code: every prior of the image, at the constant penalty). A
  GT without any such prior (a box outside the image) supplies nothing, and its k is not taken
  from the background's supply.
- The background's supply is at least 1 (official: R - sum of k, whose log is NaN when the GTs'
  k exceed the number of priors, possible on tiny images with many boxes).
- Computed in float64 and in log space, with the potentials started at 0 (official float32
  potentials started at 1: the same plan, potentials shifted by a constant), and without the
  1e-8 the official code adds to the marginals inside its logarithms (a 1e-8 relative change).
- Ties: equal rescaled entries go to the lowest GT index, and a GT to the background on a tie
  (official: ``torch.max`` over the rows GT 0..M-1, background, whose tie order the CUDA kernel
  leaves open).

Computation (no (M, R) or (M, R, K) tensor, no loop over GTs): the candidate pairs come from per-GT
windows of the prior grid (:mod:`.candidates`): the box intersected with the centre square on every
level, then, for the GTs without a prior inside both, the box-or-centre windows of
:class:`~.simota.SimOTAAssigner` (whose region tests this class inherits). On the kept pairs: the
IoU of the decoded predicted box, the cost (the class term as the prior's all-zero focal sum with
the GT class's term against 0 swapped for its term against 1: :func:`~.dynamic_k.class_sums`), k
from :func:`~.dynamic_k.dynamic_ks`. The Sinkhorn iterations are scatter log-sum-exps over the
pair lists (per prior and per GT: ``scatter_reduce`` max, then ``index_add`` of the shifted
exponentials) and one dense log-sum-exp over the participating priors for the background, in
float64 (:func:`log_sinkhorn`); the choice per prior is :class:`~.candidates.BestPerPrior`.
Memory: the kept pairs, (R,) and (M,) buffers.
"""

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..box_ops import inside, pair_iou, take_rows
from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, DensePredictions, Priors
from .candidates import BestPerPrior, PriorGrid, PriorRows, Windows
from .dynamic_k import PriorClassSums, dynamic_ks, pair_logits
from .simota import SimOTAAssigner

#: Half-side of the centre region in strides (official ``center_sampling_radius = 2.5``, written
#: in ``get_ground_truth``; the configs' FCOS CENTER_SAMPLING_RADIUS 1.5 is not read there).
CENTER_RADIUS = 2.5
#: IoUs summed into a GT's k (official config ``OTA.TOP_CANDIDATES = 20``).
TOP_CANDIDATES = 20
#: Weight of the IoU loss in the cost (official configs ``OTA.REG_WEIGHT = 1.5``, R-50 / R-101 /
#: X-101; 3.0 is YOLOX's SimOTA weight, which reimplementations of OTA copy).
REG_WEIGHT = 1.5
#: Entropic regularization epsilon (official config ``OTA.SINKHORN_EPS = 0.1``).
SINKHORN_EPS = 0.1
#: Sinkhorn-Knopp iterations (official config ``OTA.SINKHORN_ITER = 50``).
SINKHORN_ITERS = 50
#: Extra cost outside "in box and in centre" (official ``1e6 * (1 - is_in_boxes)``).
OUTSIDE_COST = 1e6
#: A prior centre is in the box when min(l, t, r, b) > 0.01 px (official ``deltas.min() > 0.01``).
INSIDE_EPS = 0.01
#: IoU floor inside -log (official: ``torch.finfo(torch.float32).eps``).
IOU_EPS = float(torch.finfo(torch.float32).eps)
#: Focal loss of the class cost (official: the model's FOCAL_LOSS_ALPHA / GAMMA, 0.25 / 2.0).
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
#: Lower bound of the background's supply (see module doc, "Differences").
MIN_BACKGROUND_SUPPLY = 1.0
#: Costs are capped here, so that non-finite head outputs give finite potentials.
COST_CAP = 1e30


@dataclass
class TransportPlan:
    """The transport problem of one image on its kept pairs, and its plan (log space)."""

    gt_idx: Tensor  # (P,) GT of each kept pair, sorted by (GT, prior)
    prior_idx: Tensor  # (P,) prior of each kept pair
    iou: Tensor  # (P,) IoU of the prior's predicted box with the GT
    cost: Tensor  # (P,) float64 cost of the pair (without the constant of a fallback GT)
    bg_cost: Tensor  # (R,) float64 cost of the background at the pairs' priors, NaN elsewhere
    supply: Tensor  # (M,) float64 k of each GT; 0 for a GT without pairs
    bg_supply: Tensor  # 0-dim float64
    in_both: Tensor  # (M,) bool: the GT has a prior inside its box and its centre region
    log_plan: Tensor  # (P,) float64 log of the transport of each pair
    log_plan_bg: Tensor  # (R,) float64 log of the background's transport to every prior


def log_sinkhorn(
    gt_idx: Tensor,
    col_idx: Tensor,
    cost: Tensor,
    bg_cost: Tensor,
    supply: Tensor,
    bg_supply: Tensor,
    num_outside: int,
    eps: float,
    iters: int,
    late: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Entropic OT between M GTs + a background and J + ``num_outside`` demanders of one unit each,
    by Sinkhorn-Knopp in log space (float64), on pair lists.

    A GT i serves only its pairs (``gt_idx``, ``col_idx``, ``cost``: (P,)); the background serves
    every demander: the J columns at ``bg_cost`` (J,), and ``num_outside`` more that nothing else
    serves (their cost cancels out of the plan). GT i supplies ``supply[i]`` (GTs without a pair
    are left out), the background ``bg_supply``. Each iteration updates the columns, then the
    rows (the order of the official code), from potentials 0; the plan is
    exp((f_i + g_j - C_ij) / eps) with the potentials in units of eps here. The GTs of ``late``
    ((M,) bool) start at -inf instead: the first column update does not see them, as the official
    iterations (potentials started at 1) do not see a row whose every cost carries the 1e6
    penalty that is left out of ``cost`` here.

    Returns (log plan of the pairs (P,), of the background at the J columns (J,), of the
    background at each outside demander (0-dim))."""
    dtype = torch.float64
    device = bg_cost.device
    num_gt, num_cols = len(supply), len(bg_cost)
    c = cost.to(dtype) / eps
    cb = bg_cost.to(dtype) / eps
    has = torch.zeros(num_gt, dtype=torch.bool, device=device)
    has[gt_idx] = True
    log_mu = torch.log(supply.to(dtype).clamp(min=1e-300))
    log_mu_bg = torch.log(bg_supply.to(dtype))
    log_outside = math.log(num_outside) if num_outside > 0 else None
    a = torch.zeros(num_gt, dtype=dtype, device=device)  # f / eps
    if late is not None:
        a = a.masked_fill(late, -math.inf)
    a_bg = torch.zeros((), dtype=dtype, device=device)
    a_bg_used = a_bg
    b = torch.zeros(num_cols, dtype=dtype, device=device)  # g / eps
    for _ in range(iters):
        # columns: b_j = log(1) - logsumexp_i(a_i - C_ij), the background included
        x = a.index_select(0, gt_idx) - c
        xb = a_bg - cb
        m = xb.scatter_reduce(0, col_idx, x, reduce="amax")
        s = torch.exp(xb - m).index_add_(0, col_idx, torch.exp(x - m.index_select(0, col_idx)))
        b = -(m + torch.log(s))
        # GT rows: a_i = log(k_i) - logsumexp_j(b_j - C_ij)
        y = b.index_select(0, col_idx) - c
        mr = torch.full((num_gt,), -math.inf, dtype=dtype, device=device)
        mr = torch.where(has, mr.scatter_reduce_(0, gt_idx, y, reduce="amax"), 0.0)
        sr = torch.zeros(num_gt, dtype=dtype, device=device)
        sr.index_add_(0, gt_idx, torch.exp(y - mr.index_select(0, gt_idx)))
        a = torch.where(has, log_mu - mr - torch.log(sr.clamp(min=1e-300)), 0.0)
        # the background row; an outside demander has b_j - C_bg,j = -a_bg (its column update)
        z = b - cb
        if log_outside is not None:
            z = torch.cat([z, (log_outside - a_bg).reshape(1)])
        a_bg_used = a_bg
        a_bg = log_mu_bg - torch.logsumexp(z, dim=0)
    log_plan = a.index_select(0, gt_idx) + b.index_select(0, col_idx) - c
    return log_plan, a_bg + b - cb, a_bg - a_bg_used


@ASSIGNER_REGISTRY.register()
class OTAAssigner(SimOTAAssigner):
    """OTA's optimal transport assignment on candidate pairs (see module doc). The box-or-centre
    region and its windows are SimOTA's (:meth:`candidate_windows`, :meth:`candidates`)."""

    def __init__(
        self,
        *,
        num_classes: int,
        center_radius: float = CENTER_RADIUS,
        top_candidates: int = TOP_CANDIDATES,
        reg_weight: float = REG_WEIGHT,
        sinkhorn_eps: float = SINKHORN_EPS,
        sinkhorn_iters: int = SINKHORN_ITERS,
        focal_alpha: float = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            center_radius: half-side of the centre region, in strides of the prior's level.
            top_candidates: the largest IoUs (in box and centre) summed into a GT's k.
            reg_weight: weight of the -log IoU term of the cost.
            sinkhorn_eps, sinkhorn_iters: entropic regularization and iterations.
            focal_alpha, focal_gamma: the focal loss of the class cost.
            box2box_transform, chunk_pairs: see :class:`~.base.BaseAssigner` (None: the
                detector's box decoding).
        """
        checks = (
            ("center_radius", center_radius, float(center_radius) > 0),
            ("top_candidates", top_candidates, int(top_candidates) >= 1),
            ("reg_weight", reg_weight, float(reg_weight) >= 0),
            ("sinkhorn_eps", sinkhorn_eps, float(sinkhorn_eps) > 0),
            ("sinkhorn_iters", sinkhorn_iters, int(sinkhorn_iters) >= 1),
            ("focal_alpha", focal_alpha, float(focal_alpha) <= 1),
            ("focal_gamma", focal_gamma, float(focal_gamma) >= 0),
        )
        for key, value, ok in checks:
            if not (ok and math.isfinite(float(value))):
                raise ValueError(f"model.assigner.{key}={value!r} is out of range")
        super().__init__(
            num_classes=num_classes,
            center_radius=center_radius,
            candidate_topk=top_candidates,
            iou_weight=reg_weight,
            cls_weight=1.0,
            objectness=False,
            box2box_transform=box2box_transform,
            **kwargs,
        )
        self.sinkhorn_eps = float(sinkhorn_eps)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)

    @property
    def reg_weight(self) -> float:
        return self.iou_weight

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, center_radius={self.center_radius}, "
            f"top_candidates={self.topq}, reg_weight={self.reg_weight}, "
            f"sinkhorn_eps={self.sinkhorn_eps}, sinkhorn_iters={self.sinkhorn_iters}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}"
        )

    def empty_result(self, priors: Priors, num_gt: int = 0) -> AssignResult:
        """All background, with soft targets (0), for a loss that weights its boxes by them."""
        result = super().empty_result(priors, num_gt)
        result.cls_targets = priors.boxes.new_zeros(len(priors))
        return result

    # ------------------------------------------------------------------------- regions
    def inner_windows(self, grid: PriorGrid, gt_boxes: Tensor) -> Windows:
        """Per GT and level, the box intersected with the centre square (may be empty)."""
        boxes = gt_boxes.double()[:, None]  # (M, 1, 4)
        squares = self.center_squares(boxes, grid.strides_t[None, :])  # (M, L, 4)
        lo = torch.maximum(boxes[..., :2], squares[..., :2])
        hi = torch.minimum(boxes[..., 2:], squares[..., 2:])
        return grid.windows(lo, hi)

    def in_both(self, priors: Priors, gt_boxes: Tensor, gt_idx: Tensor, prior_idx: Tensor):
        """(P,) bool: the prior centre is inside the box by more than 0.01 px and strictly inside
        the centre square (official: inside the square clipped to the box)."""
        points = take_rows(priors.center_columns(), prior_idx)
        boxes = take_rows(gt_boxes.t().contiguous(), gt_idx)
        in_box = inside(points, boxes, INSIDE_EPS)
        squares = self.center_squares(boxes, priors.strides.index_select(0, prior_idx))
        return in_box & inside(points, squares)

    # ------------------------------------------------------------------------- cost
    def focal(self, logits: Tensor, target: float) -> Tensor:
        """Elementwise sigmoid focal loss (float32) of logits against a constant 0 or 1.

        fvcore's ``sigmoid_focal_loss`` with its target terms folded in: for a constant target
        p_t is 1 - p or p and alpha_t is 1 - alpha or alpha, so the products with the target
        drop out. The values are fvcore's bit for bit (1 - (1 - p) is kept as it computes it;
        the tests compare on random and extreme logits), in about half its operations."""
        x = logits.float()
        p = torch.sigmoid(x)
        alpha = self.focal_alpha
        if target == 0.0:
            ce = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")
            loss, weight = ce * (1 - (1 - p)) ** self.focal_gamma, 1 - alpha
        else:
            ce = F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")
            loss, weight = ce * (1 - p) ** self.focal_gamma, alpha
        return weight * loss if alpha >= 0 else loss  # fvcore: alpha < 0 weights nothing

    def prior_terms(self, predictions: DensePredictions):
        """The logits, and the background cost of the priors (focal loss against all-zero
        targets, summed over the classes in float64), taken for the priors of the pairs only: a
        prior in no pair is served by the background alone, whatever its cost."""
        logits = predictions.logits.detach()
        return {"logits": logits, "bg_cost": PriorClassSums(logits, lambda x: self.focal(x, 0.0))}

    def pair_cost(self, priors, terms, gt_boxes, gt_classes, gt_idx, prior_idx, iou, extra):
        """Focal loss against the one-hot GT class summed over the classes (the all-zero sum with
        the GT class's term swapped) + reg_weight x -log(max(IoU, eps)), float64; without the
        1e6 outside "box and centre" (see module doc)."""
        x = pair_logits(terms["logits"], prior_idx, gt_classes.index_select(0, gt_idx))
        cls_cost = (
            terms["bg_cost"].take(prior_idx)
            - self.focal(x, 0.0).double()
            + self.focal(x, 1.0).double()
        )
        iou_cost = -torch.log(iou.double().clamp(min=IOU_EPS))
        cost = cls_cost + self.reg_weight * iou_cost
        return cost.nan_to_num(nan=COST_CAP, posinf=COST_CAP).clamp(max=COST_CAP)

    # ------------------------------------------------------------------------- the problem
    def _kept_pairs(self, priors, gt_boxes, gt_classes, pred_boxes, terms):
        """The kept pairs, sorted by (GT, prior): the in-both pairs of every GT, and the
        box-or-centre pairs of the GTs without one. Returns (gt_idx, prior_idx, iou, cost, k_iou,
        (M,) in_both per GT); ``k_iou`` is the IoU of the in-both pairs and 0 for the others (they
        do not count for k)."""
        M = len(gt_boxes)
        device = gt_boxes.device
        parts = []

        def values(g, p, for_k):
            iou = pair_iou(pred_boxes.take(p), take_rows(gt_boxes.t().contiguous(), g))
            iou = iou.nan_to_num(nan=0.0)
            cost = self.pair_cost(priors, terms, gt_boxes, gt_classes, g, p, iou, {})
            parts.append((g, p, iou, cost, iou if for_k else torch.zeros_like(iou)))

        both = torch.zeros(M, dtype=torch.bool, device=device)
        inner = self.window_pairs(priors, M, lambda grid: self.inner_windows(grid, gt_boxes))
        for g, p in inner:
            keep = self.in_both(priors, gt_boxes, g, p).nonzero().squeeze(1)
            g, p = g.index_select(0, keep), p.index_select(0, keep)
            both[g] = True
            values(g, p, True)
        fallback = (~both).nonzero().squeeze(1)
        if len(fallback):
            boxes = gt_boxes.index_select(0, fallback)
            outer = self.window_pairs(
                priors, len(fallback), lambda grid: self.candidate_windows(grid, boxes)
            )
            for local, p in outer:
                keep, _ = self.candidates(priors, boxes, local, p)
                keep = keep.nonzero().squeeze(1)
                values(fallback.index_select(0, local.index_select(0, keep)), p[keep], False)
        g, p, iou, cost, k_iou = (torch.cat(t) for t in zip(*parts))
        order = torch.sort(g * max(len(priors), 1) + p).indices  # one order, whatever the chunks
        return g[order], p[order], iou[order], cost[order], k_iou[order], both

    def transport(
        self, priors: Priors, gt_instances, predictions
    ) -> Tuple[TransportPlan, PriorRows]:
        """The image's transport problem and its plan, and the decoded predicted boxes
        (:meth:`predicted_boxes`)."""
        gt_boxes = gt_instances.gt_boxes.tensor
        gt_classes = gt_instances.gt_classes
        M, R = len(gt_boxes), len(priors)
        device = gt_boxes.device
        pred_boxes = self.predicted_boxes(priors, predictions)
        terms = self.prior_terms(predictions)
        g, p, iou, cost, k_iou, both = self._kept_pairs(
            priors, gt_boxes, gt_classes, pred_boxes, terms
        )
        has = torch.zeros(M, dtype=torch.bool, device=device)
        has[g] = True
        supply = torch.where(has, dynamic_ks(g, k_iou, M, self.topq), 0).double()
        bg_supply = (R - supply.sum()).clamp(min=MIN_BACKGROUND_SUPPLY)
        # the priors in some pair are the columns; the others are served by the background only
        participates = torch.zeros(R, dtype=torch.bool, device=device)
        participates[p] = True
        cols = participates.nonzero().squeeze(1)
        # (R,): NaN at the priors in no pair, whose cost was never needed (see prior_terms)
        bg_cost = torch.full((R,), math.nan, dtype=torch.float64, device=device)
        col_cost = terms["bg_cost"].take(cols)
        bg_cost[cols] = col_cost.nan_to_num(nan=COST_CAP, posinf=COST_CAP).clamp(max=COST_CAP)
        col_of = torch.full((R,), -1, dtype=torch.long, device=device)
        col_of[cols] = torch.arange(len(cols), device=device)
        log_plan, log_bg, log_out = log_sinkhorn(
            g,
            col_of.index_select(0, p),
            cost,
            bg_cost.index_select(0, cols),
            supply,
            bg_supply,
            R - len(cols),
            self.sinkhorn_eps,
            self.sinkhorn_iters,
            late=~both,
        )
        log_plan_bg = log_out.expand(R).clone()
        log_plan_bg[cols] = log_bg
        plan = TransportPlan(
            gt_idx=g,
            prior_idx=p,
            iou=iou,
            cost=cost,
            bg_cost=bg_cost,
            supply=supply,
            bg_supply=bg_supply,
            in_both=both,
            log_plan=log_plan,
            log_plan_bg=log_plan_bg,
        )
        return plan, pred_boxes

    # ------------------------------------------------------------------------- assignment
    def _assign(self, priors: Priors, gt_instances, predictions) -> AssignResult:
        M, R = len(gt_instances), len(priors)
        plan, pred_boxes = self.transport(priors, gt_instances, predictions)
        device = plan.log_plan_bg.device
        g = plan.gt_idx
        # rescale every supplier's row to a largest entry of 1 (0 in log), then per prior the
        # supplier of the largest entry: the lowest GT on ties, a GT before the background
        row_max = torch.full((M,), -math.inf, dtype=torch.float64, device=device)
        row_max.scatter_reduce_(0, g, plan.log_plan, reduce="amax")
        best = BestPerPrior(R, device, torch.float64)
        best.update(plan.prior_idx, g, plan.log_plan - row_max.index_select(0, g))
        score, idx = best.result()
        bg_score = plan.log_plan_bg - plan.log_plan_bg.max()
        matched = torch.where((idx >= 0) & (score >= bg_score), idx, -1)
        has = plan.supply > 0
        result = self.soft_label_result(gt_instances, matched, pred_boxes, plan.supply.long(), has)
        result.stats["gt_outside_centre"] = (~plan.in_both & has).sum().float()
        return result

"""AutoAssign: prediction-aware, differentiable label assignment.

Paper: "AutoAssign: Differentiable Label Assignment for Dense Object Detection" (Zhu et al., 2020,
arXiv:2007.03496), Eq. 1-12, Sec. 4.1. Official code: Megvii-BaseDetection/AutoAssign@62aee98b
(docs/methods.md, "AutoAssign"); mmdet's ``AutoAssignHead`` for the small-GT guard.

Rule: every point inside a GT box, on every pyramid level, is both a positive and a negative
candidate of that GT; positive weights w+ = C(P+) G / sum (confidence x learnable center prior) and
negative weights 1 - f(1 / (1 - IoU)) turn the candidates into a soft, differentiable assignment.

Differences from the paper:

- Loss normalizers and the center-prior term ``#GT / sum G`` come from the official code (the
  paper's Eq. 12 does not show them); they live in :class:`dense_assign.losses.AutoAssignLoss`.
- A GT with no point inside it (smaller than a stride on the offset-0 grid) takes as candidates the
  ``fallback_topk`` = 9 points with the smallest stride-normalized distance to its centre over all
  levels, i.e. the highest *fixed* prior G(mu=0, sigma=1) (mmdet's ``force_topk``, which ranks by
  the learned prior). The official code has no guard: its positive bag is empty (BCE saturates at
  100) and ``#GT / sum G`` divides by 1e-12. Fallback candidates are treated as inside points
  everywhere (center prior, weights, negative weights, normalizers), as mmdet does.
- A point inside several GTs of the same class gets the negative weight of the highest GT index (the
  official loop over GTs lets the later GT overwrite; here it is made deterministic and vectorized).
- Explicit objectness (Table 4, "explicit-obj") is not implemented; ``objectness`` is "implicit"
  (ImpObj) or "none" (Table 4 "no-obj": P(cls) without objectness; the head then has no quality
  branch).
- ``confidence`` switches only the confidence inside the weighting C = exp(P / tau) (Table 4
  "P(cls)-only" / "P(loc)-only", Table 2 "none" = C = 1); the bag confidence P+ of Eq. 12 is always
  the joint P(cls) P(obj) P(loc), else the box (or class) branch would get no positive gradient.
- Localization loss: fvcore's GIoU on decoded (x1, y1, x2, y2) boxes; the official code computes the
  same GIoU in (l, t, r, b) form at the shared point.

What the assigner returns (``AssignResult.pairwise``, one image; P candidate (GT, point) pairs,
sorted by GT then point; Q negative-weight entries):

=================  =====  ======================================================================
key                shape  meaning
=================  =====  ======================================================================
``gt_idx``         (P,)   GT index of each candidate pair (long)
``point_idx``      (P,)   point index of each candidate pair (long)
``center_prior``   (P,)   G (Eq. 2), differentiable in mu, sigma (1 for ``center_prior="none"``)
``pos_conf``       (P,)   P+ = P(cls|obj) P(obj) P(loc) (Eq. 3-8), differentiable
``w_plus``         (P,)   w+ (Eq. 10), *not* detached (gradient into mu, sigma and the head)
``neg_point``      (Q,)   point of a foreground-probability entry (long)
``neg_class``      (Q,)   its class channel (long)
``neg_fg``         (Q,)   f(1 / (1 - IoU)) in (0, 1] (Eq. 11; the negative weight is 1 - f), no grad
=================  =====  ======================================================================

``(neg_point, neg_class)`` pairs are unique. ``labels`` / ``matched_idxs`` / ``matched_gt_boxes``
are for analysis only (the loss does not read them): each candidate point takes the GT of its
largest w+ among the GTs it is a candidate of (ties: lowest GT index) and that GT's class; every
other point is background (label K, matched index -1).

All work is vectorized, with no loop over GTs or points, and nothing is (M, R): the candidate pairs
come from per-GT windows of the point grid (:mod:`~dense_assign.assigners.candidates`: the cells
inside each box, the inside test evaluated on those pairs), the fallback's nearest points from
windows around the GT centre, and the maximum IoU of a point's predicted box over all GTs
(:meth:`AutoAssign.max_iou`) from the GTs whose box is within the level's largest predicted-box
extent of the point. The weights, confidences and the loss
(:class:`~dense_assign.losses.AutoAssignLoss`) work on the pair list, so memory grows with the
number of candidate pairs. The head's boxes are decoded only at the pairs' points. What remains
dense is per point only: the head's (R, K) outputs and the loss's negative term over every point
and class. The tests compare the
result with a dense reference (the inside test, the fallback ranking and the maximum IoU on
GTs x all points, ``tests/reference_assigners.py``).
"""

import math
from typing import Tuple

import torch
from fvcore.nn import giou_loss
from torch import Tensor, nn

from ..box_ops import box_centers, inside, pair_iou, take_rows
from ..registry import ASSIGNER_REGISTRY
from ..structures import Priors
from .base import BaseAssigner
from .candidates import AllPairs, k_smallest, nearest_candidates, pairs_in_chunks

CENTER_PRIORS = ("none", "fixed", "shared", "per_category")  # Table 3 (+ Table 2 "none")
CONFIDENCES = ("joint", "cls", "loc", "none")  # Table 4 (+ Table 2 "none": C = 1)
OBJECTNESS = ("implicit", "none")  # Table 4: ImpObj / "no-obj"

#: lambda of Eq. 4-6, the weight of the localization loss in the joint confidence (Sec. 4.1: 5.0).
LOC_WEIGHT = 5.0
#: tau of Eq. 9, temperature of the confidence weighting (Sec. 4.1: 1/3).
TEMPERATURE = 1.0 / 3
#: Candidates of a GT with no point inside it (mmdet force_topk, topk=9; not in the paper).
FALLBACK_TOPK = 9
#: Clamp of the denominators (official code and mmdet, EPS = 1e-12).
EPS = 1e-12
#: GTs x points below which the maximum IoU over GTs takes every (GT, point) pair (cheaper than
#: windows).
SMALL_IOU_MATRIX = 4096
#: Largest points x classes for which the (point, class) deduplication uses a table of that size
#: (64 MB of int64; and at most 16 entries per pair) rather than sorting the keys.
DENSE_KEY_TABLE = 1 << 23


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"model.assigner.{name}={value!r}; allowed: {', '.join(allowed)}")


@ASSIGNER_REGISTRY.register()
class AutoAssign(BaseAssigner):
    """Center weighting x confidence weighting over all points inside each GT (see module doc)."""

    prediction_aware = True

    def __init__(
        self,
        *,
        num_classes: int,
        center_prior: str = "per_category",
        confidence: str = "joint",
        objectness: str = "implicit",
        loc_weight: float = LOC_WEIGHT,
        temperature: float = TEMPERATURE,
        fallback_topk: int = FALLBACK_TOPK,
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            center_prior: "per_category" (learnable (K, 2) mu and sigma, Sec. 3.2), "shared" (one
                learnable (1, 2) pair), "fixed" (mu 0, sigma 1, not learned) or "none" (G = 1 on
                every candidate) (Table 3; Table 2 "Center").
            confidence: what C = exp(P / tau) weights by: "joint" P(cls) P(loc) (Sec. 3.3.2),
                "cls", "loc" (Table 4) or "none" (C = 1, Table 2 "Conf").
            objectness: "implicit" (P(cls) = P(cls|obj) P(obj), Eq. 3; needs the head's
                objectness branch) or "none" (Table 4 "no-obj").
            loc_weight: lambda, P(loc) = exp(-lambda GIoU loss) (Eq. 6).
            temperature: tau of Eq. 9.
            fallback_topk: candidates of a GT without an inside point (see module doc).
            box2box_transform, chunk_pairs: see :class:`BaseAssigner` (None: the detector's box
                decoding).
        """
        super().__init__(num_classes=num_classes, box2box_transform=box2box_transform, **kwargs)
        _check("center_prior", center_prior, CENTER_PRIORS)
        _check("confidence", confidence, CONFIDENCES)
        _check("objectness", objectness, OBJECTNESS)
        if not loc_weight >= 0 or not temperature > 0 or int(fallback_topk) < 1:
            raise ValueError(
                "model.assigner needs loc_weight >= 0, temperature > 0 and fallback_topk >= 1, got "
                f"{loc_weight}, {temperature}, {fallback_topk}"
            )
        self.center_prior_mode = center_prior
        self.confidence = confidence
        self.objectness = objectness
        self.loc_weight = float(loc_weight)
        self.temperature = float(temperature)
        self.fallback_topk = int(fallback_topk)
        # mu = 0, sigma = 1 at start (official code, L79-80; mmdet CenterPrior)
        rows = self.num_classes if center_prior == "per_category" else 1
        if center_prior in ("per_category", "shared"):
            self.mu = nn.Parameter(torch.zeros(rows, 2))
            self.sigma = nn.Parameter(torch.ones(rows, 2))
        elif center_prior == "fixed":
            self.register_buffer("mu", torch.zeros(1, 2))
            self.register_buffer("sigma", torch.ones(1, 2))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, center_prior={self.center_prior_mode}, "
            f"confidence={self.confidence}, objectness={self.objectness}, "
            f"loc_weight={self.loc_weight}, temperature={self.temperature:.4g}"
        )

    # ------------------------------------------------------------------------- entry
    def forward(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        # no shortcut for M = 0: the (empty) pair computation keeps mu, sigma and every head output
        # in the graph, so an image without GT still gives DDP-safe zero positive / center losses
        if predictions is None:
            raise ValueError("AutoAssign is prediction-aware: call it with the image's predictions")
        return self.assign(priors, gt_instances, predictions=predictions, image_size=image_size)

    # ------------------------------------------------------------------------- candidates
    @torch.no_grad()
    def candidate_pairs(self, priors: Priors, gt_boxes: Tensor) -> Tuple[Tensor, Tensor, int]:
        """(GT, point) candidate pairs sorted by GT then point, and the number of fallback GTs.

        Candidates are the points strictly inside the GT (min(l, t, r, b) > 0, official code) on
        every level; a GT without any takes its ``fallback_topk`` nearest points by
        stride-normalized distance to its centre (ties: lowest point index).
        """
        num_gt, num_points = len(gt_boxes), len(priors)
        none = torch.zeros(0, dtype=torch.long, device=gt_boxes.device)
        if num_points == 0:
            return none, none, 0
        L = priors.num_levels
        pairs = self.window_pairs(
            priors,
            num_gt,
            lambda grid: grid.windows(
                gt_boxes[:, None, :2].expand(-1, L, -1), gt_boxes[:, None, 2:].expand(-1, L, -1)
            ),
        )
        gts, pts = [none], [none]
        center_columns, gt_columns = priors.center_columns(), gt_boxes.t().contiguous()
        for g, p in pairs:
            keep = inside(take_rows(center_columns, p), take_rows(gt_columns, g))
            keep = keep.nonzero().squeeze(1)
            gts.append(g.index_select(0, keep))
            pts.append(p.index_select(0, keep))
        g, p = torch.cat(gts), torch.cat(pts)
        # the windows (one per GT and level, all anchors) and AllPairs give the pairs GT by GT, in
        # chunks of ascending GTs, each GT's in ascending point order: sorted by (GT, point)
        run = torch.zeros(num_gt, dtype=torch.long, device=g.device)
        run.scatter_add_(0, g, torch.ones_like(g))  # pairs per GT
        empty = (run == 0).nonzero().squeeze(1)
        if len(empty) == 0:
            return g, p, 0
        # the fallback GTs' pairs are merged in at their GTs' places, each row ascending
        top = self._fallback(priors, gt_boxes.index_select(0, empty)).sort(dim=1).values  # (f, k)
        k = top.shape[1]
        counts = run.index_fill(0, empty, k)
        start = counts.cumsum(0) - counts  # first place of each GT's pairs in the merged list
        shift = (start - (run.cumsum(0) - run)).index_select(0, g)  # ... minus in the windows'
        at = torch.arange(len(g), device=g.device) + shift
        at_fallback = start.index_select(0, empty)[:, None] + torch.arange(k, device=g.device)
        total = len(g) + top.numel()
        gt_out = torch.empty(total, dtype=torch.long, device=g.device).index_copy_(0, at, g)
        pt_out = torch.empty(total, dtype=torch.long, device=g.device).index_copy_(0, at, p)
        gt_out.index_copy_(0, at_fallback.view(-1), empty.repeat_interleave(k))
        pt_out.index_copy_(0, at_fallback.view(-1), top.reshape(-1))
        return gt_out, pt_out, len(empty)

    def _fallback(self, priors: Priors, boxes: Tensor) -> Tensor:
        """(f, k) the ``fallback_topk`` points nearest each box centre over all levels, ascending:
        the k nearest of every level (windows), then the k nearest among those (the k smallest
        overall are among their own level's k smallest)."""
        grid = self.prior_grid(priors)
        centers = box_centers(boxes)
        starts = priors.level_starts
        ks = [min(self.fallback_topk, n) for n in priors.level_sizes]

        def whole_level_fn(level, rows):
            start, size = starts[level], priors.level_sizes[level]
            points = priors.centers[start : start + size][None]
            strides = priors.strides[start : start + size][None]
            return k_smallest(_normalized_sq(points, strides, centers[rows]), ks[level]) + start

        def window_fn(i):
            return _normalized_sq(priors.centers[i], priors.strides[i], centers)

        units = [float(s) for s in priors.level_strides]
        idx = torch.cat(
            nearest_candidates(grid, centers, ks, window_fn, whole_level_fn, units), dim=1
        )
        values = window_fn(idx)
        return idx.gather(1, k_smallest(values, min(self.fallback_topk, len(priors))))

    # ------------------------------------------------------------------------- pair values
    def center_prior(
        self, priors: Priors, gt_boxes: Tensor, gt_classes: Tensor, gt_idx: Tensor, pt_idx: Tensor
    ) -> Tensor:
        """G (Eq. 2) of each pair: prod over x, y of exp(-(d - mu)^2 / (2 sigma^2)), with d the
        signed (point - GT centre) / stride of the point's level (Sec. 3.2)."""
        if self.center_prior_mode == "none":
            return priors.centers.new_ones(len(gt_idx))
        centers = box_centers(gt_boxes).t().contiguous()
        d = take_rows(priors.center_columns(), pt_idx) - take_rows(centers, gt_idx)
        d = d / priors.strides.index_select(0, pt_idx)[:, None]
        if self.center_prior_mode == "per_category":
            rows = gt_classes.index_select(0, gt_idx)
        else:
            rows = torch.zeros_like(gt_idx)
        mu = take_rows(self.mu.t().contiguous(), rows)
        sigma = take_rows(self.sigma.t().contiguous(), rows)
        return torch.exp(-((d - mu) ** 2) / (2 * sigma**2)).prod(dim=1)

    def class_confidence(self, predictions, gt_classes: Tensor, gt_idx: Tensor, pt_idx: Tensor):
        """P(cls) = P(cls|obj) P(obj) of each pair at its GT's class (Eq. 3)."""
        logits = predictions.logits
        flat = pt_idx * logits.shape[1] + gt_classes.index_select(0, gt_idx)
        prob = logits.reshape(-1).index_select(0, flat).sigmoid()
        if self.objectness == "implicit":
            if predictions.quality is None:
                raise ValueError(
                    "model.assigner.objectness='implicit' needs the head's objectness branch "
                    "(model.head.quality='objectness')"
                )
            prob = prob * predictions.quality[:, 0].index_select(0, pt_idx).sigmoid()
        return prob

    # ------------------------------------------------------------------------- assignment
    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        gt_classes = gt_instances.gt_classes
        num_gt, num_points = len(gt_boxes), len(priors)
        gt_idx, pt_idx, num_fallback = self.candidate_pairs(priors, gt_boxes)

        # --- positive side (differentiable): G, P+, C, w+ (Eq. 2-10)
        center = self.center_prior(priors, gt_boxes, gt_classes, gt_idx, pt_idx)
        # the head's boxes, decoded at the pairs' points only: a box depends on its own prior's
        # row alone, and a point's gradient is summed over its pairs in the same order as from
        # a decoding of every prior (the same values and gradients, bit for bit)
        points, pair_slot = _pair_points(pt_idx, num_points)
        point_boxes = self.decode_boxes(
            predictions.deltas.index_select(0, points), priors.boxes.index_select(0, points)
        )  # (U, 4)
        p_cls = self.class_confidence(predictions, gt_classes, gt_idx, pt_idx)
        loc_loss = giou_loss(
            take_rows(point_boxes.t().contiguous(), pair_slot),
            take_rows(gt_boxes.t().contiguous(), gt_idx),
            reduction="none",
        )
        p_loc = torch.exp(-self.loc_weight * loc_loss)  # Eq. 6-7
        pos_conf = p_cls * p_loc  # P+ (Eq. 8)
        if self.confidence == "none":
            conf_weight = torch.ones_like(pos_conf)
        else:
            conf = {"joint": pos_conf, "cls": p_cls, "loc": p_loc}[self.confidence]
            conf_weight = torch.exp(conf / self.temperature)  # C (Eq. 9)
        weighted = conf_weight * center
        denom = weighted.new_zeros(num_gt).index_add(0, gt_idx, weighted)
        # w+ (Eq. 10), not detached
        w_plus = weighted / denom.clamp(min=EPS).index_select(0, gt_idx)

        # --- negative side (no gradient): f(1 / (1 - max IoU)) per GT (Eq. 11)
        neg_point, neg_class, neg_fg = self.foreground_probability(
            point_boxes.detach(), points, pair_slot, gt_boxes, gt_classes, gt_idx, pt_idx, priors
        )

        # --- hard labels, for analysis only
        with torch.no_grad():
            w = w_plus.detach()
            best = w.new_full((num_points,), -float("inf")).scatter_reduce(
                0, pt_idx, w, reduce="amax"
            )
            is_best = (w == best.index_select(0, pt_idx)).nonzero().squeeze(1)
            matched = torch.full((num_points,), num_gt, dtype=torch.long, device=w.device)
            matched = matched.scatter_reduce(
                0, pt_idx.index_select(0, is_best), gt_idx.index_select(0, is_best), reduce="amin"
            )
            matched = matched.masked_fill_(matched == num_gt, -1)
        if num_gt == 0:
            result = self.empty_result(priors)
        else:
            result = self.result_from_matches(gt_instances, matched)
        result.pairwise = {
            "gt_idx": gt_idx,
            "point_idx": pt_idx,
            "center_prior": center,
            "pos_conf": pos_conf,
            "w_plus": w_plus,
            "neg_point": neg_point,
            "neg_class": neg_class,
            "neg_fg": neg_fg,
        }
        result.stats.update(
            {
                "num_gt": float(num_gt),
                "num_pairs": float(len(gt_idx)),
                "gt_fallback": float(num_fallback),
            }
        )
        return result

    @torch.no_grad()
    def max_iou(self, priors: Priors, boxes: Tensor, gt_boxes: Tensor, points: Tensor):
        """(U,) max over GTs (and 0) of IoU((U, 4) ``boxes``, the predicted boxes of the priors
        ``points``, GT).

        The (GT, point) pairs: on a grid, from the GTs near each point (a predicted box reaches
        at most its level's largest extents around its point, so only the cells within those
        extents of a GT can overlap it); every pair without a grid, with non-finite boxes, or
        when the windows would hold more pairs than that (or the GT x point count is small)."""
        num_gt, num_u = len(gt_boxes), len(points)
        max_iou = boxes.new_zeros(num_u)
        grid = None
        if num_gt * num_u > SMALL_IOU_MATRIX and bool(torch.isfinite(boxes).all()):
            grid = self.prior_grid(priors)
        windows = None
        if grid is not None:
            centers = priors.centers.index_select(0, points)
            ext = torch.cat([centers - boxes[:, :2], boxes[:, 2:] - centers], dim=1).double()
            level = priors.levels.index_select(0, points)
            per_level = ext.new_full((grid.num_levels, 4), -math.inf)
            per_level.scatter_reduce_(0, level[:, None].expand(-1, 4), ext, reduce="amax")
            gt = gt_boxes.double()
            windows = grid.windows(
                gt[:, None, :2] - per_level[None, :, 2:], gt[:, None, 2:] + per_level[None, :, :2]
            )
            if windows.num_pairs() > num_gt * num_u:
                windows = None
        if windows is None:  # pairs of GTs and the points' own indices 0..U-1
            pairs, slot = (
                pairs_in_chunks(AllPairs(num_gt, num_u, boxes.device), self.chunk_pairs),
                None,
            )
        else:  # pairs of GTs and prior indices: those of the points map to 0..U-1
            pairs = pairs_in_chunks(windows, self.chunk_pairs)
            slot = _rows_of_priors(points, len(priors))
        gt_columns, box_columns = gt_boxes.t().contiguous(), boxes.t().contiguous()
        for g, u in pairs:
            if slot is not None:
                u = slot.index_select(0, u)
                keep = (u >= 0).nonzero().squeeze(1)
                g, u = g.index_select(0, keep), u.index_select(0, keep)
            iou = pair_iou(take_rows(gt_columns, g), take_rows(box_columns, u))
            max_iou.scatter_reduce_(0, u, iou, reduce="amax")
        return max_iou

    @torch.no_grad()
    def foreground_probability(
        self,
        point_boxes: Tensor,
        points: Tensor,
        pair_slot: Tensor,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_idx: Tensor,
        pt_idx: Tensor,
        priors: Priors,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Sparse foreground-probability map F: (point, class, f) entries, unique (point, class).

        ``points``: the (U,) priors of the pairs, ascending, with their (U, 4) predicted boxes
        ``point_boxes``; ``pair_slot``: each pair's row among them (:func:`_pair_points`).

        IoU_j = max over *all* GTs of IoU(decoded box of point j, GT) (official code); for the
        candidates of GT i, v = 1 / (1 - IoU_j) is min-max normalized over that GT's candidates,
        f = (v - min + eps) / (max - min + eps), and written at GT i's class channel. Where a point
        is a candidate of several GTs of one class, the highest GT index wins (the official loop
        lets the later GT overwrite).
        """
        device = point_boxes.device
        if len(gt_idx) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone(), point_boxes.new_zeros(0)
        max_iou = self.max_iou(priors, point_boxes, gt_boxes, points)
        v = 1.0 / (1.0 - max_iou).clamp(min=EPS)
        v = v.index_select(0, pair_slot)  # per pair
        num_gt = len(gt_boxes)
        vmin = v.new_full((num_gt,), float("inf")).scatter_reduce(0, gt_idx, v, reduce="amin")
        vmax = v.new_full((num_gt,), -float("inf")).scatter_reduce(0, gt_idx, v, reduce="amax")
        vmin, vmax = vmin.index_select(0, gt_idx), vmax.index_select(0, gt_idx)
        fg = (v - vmin + EPS) / (vmax - vmin + EPS)
        cls = gt_classes.index_select(0, gt_idx)
        key = pt_idx * self.num_classes + cls
        table = len(priors) * self.num_classes
        if table <= min(DENSE_KEY_TABLE, 16 * len(key)):
            # the highest GT index per (point, class) through a table over all keys
            last = torch.full((table,), -1, dtype=torch.long, device=device)
            last.scatter_reduce_(0, key, gt_idx, reduce="amax")
            keep = gt_idx == last.index_select(0, key)
        else:
            unique_keys, inverse = torch.unique(key, return_inverse=True)
            last = torch.full((len(unique_keys),), -1, dtype=torch.long, device=device)
            last = last.scatter_reduce(0, inverse, gt_idx, reduce="amax")
            keep = gt_idx == last.index_select(0, inverse)
        keep = keep.nonzero().squeeze(1)
        return pt_idx.index_select(0, keep), cls.index_select(0, keep), fg.index_select(0, keep)


def _pair_points(pt_idx: Tensor, num_points: int) -> Tuple[Tensor, Tensor]:
    """The (U,) distinct points of the pairs ``pt_idx``, ascending, and each pair's row among
    them, through a per-point table (no sort)."""
    used = torch.zeros(num_points, dtype=torch.bool, device=pt_idx.device)
    points = used.index_fill_(0, pt_idx, True).nonzero().squeeze(1)
    return points, _rows_of_priors(points, num_points).index_select(0, pt_idx)


def _rows_of_priors(points: Tensor, num_points: int) -> Tensor:
    """(num_points,) each prior's row among the (U,) distinct ``points``, -1 for the others."""
    rows = torch.full((num_points,), -1, dtype=torch.long, device=points.device)
    return rows.index_copy_(0, points, torch.arange(len(points), device=points.device))


def _normalized_sq(points: Tensor, strides: Tensor, centers: Tensor) -> Tensor:
    """(m, n) squared distance of (1 or m, n, 2) ``points`` to the (m, 2) ``centers`` in units of
    the points' (1 or m, n) ``strides``; one formula for the windows and the whole-level search."""
    d = (points - centers[:, None]) / strides[..., None]
    return (d**2).sum(dim=2)

"""Candidate windows: the (GT, prior) pairs an assigner looks at, without a dense (M, R) matrix.

A GT box only concerns the priors near it. Priors lie on one regular grid per pyramid level
(:class:`PriorGrid`: prior ``(y, x, a)`` of level ``l`` has index ``start_l + (y W_l + x) A + a`` and
centre ``((x + offset) s_l, (y + offset) s_l)``), so the priors whose centre can fall into an
axis-aligned rectangle form a rectangle of grid cells. The assigners describe, per GT and level,
the rectangle (in pixels) that *contains* their candidates' centres; :meth:`PriorGrid.windows` turns
it into cell ranges and :meth:`Windows.pairs` expands those into flat ``(gt_idx, prior_idx)`` lists,
vectorized over GTs (a loop over levels and over chunks of GTs only). The assigner then evaluates
its own exact rule on the pairs and reduces per prior with scatter operations
(:class:`BestPerPrior`).

Why the result is exactly the one of the rule on every (GT, prior) pair (the dense references of
``tests/reference_assigners.py``, which the tests compare against): a window only has to be a *superset* of the candidates,
because the rule itself is re-evaluated on every pair. The windows are therefore widened by a slack
(:meth:`PriorGrid.slack`) covering the largest deviation of the actual prior centres from the ideal
grid (measured once per :class:`~dense_assign.structures.Priors` content, e.g. the float rounding
of detectron2's anchor boxes) and the float rounding of the bounds. Reductions reproduce the dense
tie-breaking: the maximum score, and among equal scores the lowest GT index (what ``max(dim=0)``
returns).

For "the k nearest priors" (ATSS, AutoAssign's fallback) a fixed-size window around the cell nearest
the GT centre is used, and each GT's window is *checked*: it is kept only if its k-th smallest
distance is below a lower bound of the distance of every prior outside it
(:func:`nearest_candidates`), otherwise all the level's priors are searched for that GT. Ties among
equal distances go to the lowest prior index (:func:`k_smallest`).

"Each GT's k best pairs" on a pair list (TAL's top k, the dynamic-k matching's k lowest costs) is
:func:`smallest_per_gt`: each GT's run of pairs is a row of a padded block and the k-th value of a
row comes from ``topk``, so the pair list is not sorted (issue #20: a stable sort of TAL's 400,000
pairs at M = 1000 was a third of its time).

When the priors do not follow that layout (a hand-made :class:`Priors`, or centres far from the
grid), :meth:`PriorGrid.of` returns None and every (GT, prior) pair is a candidate
(:class:`AllPairs`), in chunks of GTs; the rule and the reductions are the same.
"""

import bisect
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor

#: Relative and absolute slack (pixels) added to every window bound, on top of the measured
#: deviation of the prior centres from the ideal grid: far above float32 rounding (~6e-8 relative).
REL_SLACK = 1e-5
ABS_SLACK = 1e-3


def k_smallest(values: Tensor, k: int) -> Tensor:
    """(m, k) column indices of the k smallest values of each row of (m, n) ``values`` (n >= k),
    ascending; among equal values the lowest columns win, so the choice is deterministic. NaN
    counts as +inf."""
    m, n = values.shape
    if k <= 0 or m == 0:
        return torch.zeros((m, max(k, 0)), dtype=torch.long, device=values.device)
    values = torch.nan_to_num(values, nan=math.inf)
    kth = values.topk(k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)
    below = values < kth
    tied = values == kth
    need = k - below.sum(dim=1, keepdim=True)
    keep = below | (tied & (tied.cumsum(dim=1) <= need))
    return keep.nonzero(as_tuple=True)[1].view(m, k)


#: Elements (GTs x the longest run among them) of one padded block of :meth:`GTRuns.blocks`.
RUN_BLOCK = 1 << 20


def smallest_per_gt(
    gt_idx: Tensor, values: Tensor, ks, num_gt: int, prior_idx: Optional[Tensor] = None
) -> Tensor:
    """(P,) bool: the pairs each GT takes among the (P,) pairs ``gt_idx``: its ``ks`` (an int,
    or (num_gt,) int64) pairs of smallest ``values`` (NaN counts as +inf), all of them when it
    has fewer; among equal values the lowest ``prior_idx``, or without it the earliest in the
    list.

    No sort of the pairs when each GT's pairs are consecutive and (with ``prior_idx``) in
    ascending prior order, as :meth:`Windows.pairs` and :class:`AllPairs` give them (pairs in
    another order are sorted first, :class:`GTRuns`): each GT's k-th smallest value comes from a
    ``topk`` over its row of a padded block (:meth:`GTRuns.blocks`); then, on the flat list, a GT
    takes its pairs below that value and, of those equal to it, the first ones, as many as it
    still needs."""
    num, device = len(gt_idx), gt_idx.device
    if num == 0 or num_gt == 0:
        return torch.zeros(num, dtype=torch.bool, device=device)
    runs = GTRuns(gt_idx, num_gt, prior_idx)
    gt_idx, values = runs.gt_idx, runs.ordered(values)
    values = torch.nan_to_num(values, nan=math.inf)
    counts = runs.counts
    if isinstance(ks, Tensor):
        ks = torch.minimum(ks.to(device=device, dtype=torch.long), counts)
    else:
        ks = counts.clamp(max=max(int(ks), 0))
    # each GT's k-th smallest value (-inf where k = 0: it takes nothing)
    kth = torch.full((num_gt,), -math.inf, dtype=values.dtype, device=device)
    for rows, idx, valid in runs.blocks():
        k = ks.index_select(0, rows)
        kmax = int(k.max())
        if kmax == 0:
            continue
        block = values.index_select(0, idx.view(-1)).view(idx.shape).masked_fill_(~valid, math.inf)
        top = block.topk(kmax, dim=1, largest=False, sorted=True).values
        value = top.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1)
        kth.index_copy_(0, rows, torch.where(k > 0, value, torch.full_like(value, -math.inf)))
    # on the flat list: the pairs below the k-th value, then the first of those equal to it
    bound = kth.index_select(0, gt_idx)
    below = values < bound
    tied = values == bound
    need = ks - torch.zeros_like(ks).scatter_add_(0, gt_idx, below.long())
    seen = tied.long().cumsum(0)  # tied pairs up to and including each pair, over the list
    before = torch.cat([seen.new_zeros(1), seen])[runs.starts]  # ... before each GT's first pair
    keep = below | (tied & (seen - before.index_select(0, gt_idx) <= need.index_select(0, gt_idx)))
    return runs.restored(keep)


class GTRuns:
    """A pair list ``gt_idx`` as one run of consecutive pairs per GT, for per-GT work on padded
    blocks (:meth:`blocks`) instead of a sort of the pairs.

    The pairs stay in their order when each GT's pairs are already consecutive (with
    ``prior_idx``: in ascending prior order), as :meth:`Windows.pairs` and :class:`AllPairs` give
    them; otherwise they are sorted by GT (then prior), stably. :meth:`ordered` puts a per-pair
    value in the runs' order and :meth:`restored` puts it back in the list's."""

    def __init__(self, gt_idx: Tensor, num_gt: int, prior_idx: Optional[Tensor] = None):
        num, device = len(gt_idx), gt_idx.device
        #: the pairs' positions in the list, in the runs' order (None: the list's own order)
        self.order: Optional[Tensor] = None
        if num > 1:
            g0, g1 = gt_idx[:-1], gt_idx[1:]
            ordered = g1 > g0 if prior_idx is not None else g1 >= g0
            if prior_idx is not None:
                ordered |= (g1 == g0) & (prior_idx[1:] > prior_idx[:-1])
            if not bool(ordered.all()):
                order = torch.arange(num, device=device)
                if prior_idx is not None:
                    order = torch.sort(prior_idx, stable=True).indices
                self.order = order.index_select(0, torch.sort(gt_idx[order], stable=True).indices)
        #: (P,) the pairs' GTs in the runs' order
        self.gt_idx = self.ordered(gt_idx)
        #: (num_gt,) pairs per GT, and the position of each GT's first pair in the runs' order
        self.counts = torch.zeros(num_gt, dtype=torch.long, device=device)
        self.counts.scatter_add_(0, self.gt_idx, torch.ones_like(self.gt_idx))
        self.starts = self.counts.cumsum(0) - self.counts

    def ordered(self, values: Tensor) -> Tensor:
        return values if self.order is None else values.index_select(0, self.order)

    def restored(self, values: Tensor) -> Tensor:
        if self.order is None:
            return values
        return torch.zeros_like(values).index_copy_(0, self.order, values)

    def blocks(self) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
        """Padded blocks of the runs of the GTs that have pairs: (n,) GTs, (n, width) positions
        of their pairs in the runs' order (0 in the padding), (n, width) bool, the real ones.

        Each block holds at most :data:`RUN_BLOCK` elements, or a single run. One block when all
        fit; otherwise the runs are grouped by length, (2^(b-1), 2^b], so less than half of a
        block is padding."""
        present = (self.counts > 0).nonzero().squeeze(1)
        if len(present) == 0:
            return
        lengths = self.counts.index_select(0, present)
        width = int(lengths.max())
        if len(present) * width <= RUN_BLOCK:
            groups = [(present, width)]
        else:
            groups = []
            bucket = torch.ceil(torch.log2(lengths.double())).long()
            for b in torch.unique(bucket).tolist():
                sel = (bucket == b).nonzero().squeeze(1)
                rows = present.index_select(0, sel)
                width = int(lengths.index_select(0, sel).max())
                step = max(1, RUN_BLOCK // width)
                groups += [(rows[i : i + step], width) for i in range(0, len(rows), step)]
        for rows, width in groups:
            col = torch.arange(width, device=rows.device)
            valid = col < self.counts.index_select(0, rows)[:, None]
            idx = (self.starts.index_select(0, rows)[:, None] + col).masked_fill_(~valid, 0)
            yield rows, idx, valid


class PriorRows:
    """A per-prior quantity computed only for the priors that pairs ask for: ``compute(idx)``
    gives the rows of the priors ``idx`` ((n, ...) values, each row depending on its prior
    alone); :meth:`take` computes a prior's row the first time it is asked for and keeps it.

    The priors no candidate pair reaches cost nothing: at M = 1 that is nearly all of them, and
    a per-prior pass over every prior (the decoded boxes, a sum over the classes) was a fixed
    cost of the prediction-aware assigners larger than detectron2's whole matching (issue
    #20)."""

    def __init__(self, num: int, compute, device):
        self.num, self.compute = num, compute
        #: (..., R) the rows computed so far, the priors along the *last* dimension (dtype and
        #: shape from the first ``compute``): :meth:`take` gathers along it, so each column of
        #: its (P, C) answer is contiguous, as :func:`~dense_assign.box_ops.take_rows` gives
        self.columns: Optional[Tensor] = None
        self.done = torch.zeros(num, dtype=torch.bool, device=device)

    def take(self, prior_idx: Tensor) -> Tensor:
        """(P, ...) the rows of the priors ``prior_idx``, computing those not asked for before."""
        need = torch.zeros_like(self.done).index_fill_(0, prior_idx, True) & ~self.done
        new = need.nonzero().squeeze(1)
        if len(new) or self.columns is None:
            rows = self.compute(new).movedim(0, -1)
            if self.columns is None:
                self.columns = rows.new_full(tuple(rows.shape[:-1]) + (self.num,), math.nan)
            self.columns.index_copy_(-1, new, rows)
            self.done |= need
        return self.columns.index_select(-1, prior_idx).movedim(-1, 0)


class BestPerPrior:
    """Per prior, the highest score over the (GT, prior) pairs fed to :meth:`update` and its GT
    index, ties to the lowest GT index; -inf / -1 for a prior without pairs. Pairs can come in
    any number of chunks, in any order: the result equals a dense ``max(dim=0)`` over GTs."""

    def __init__(self, num_priors: int, device, dtype=torch.float32):
        self.num_priors = num_priors
        self.device = device
        self.dtype = dtype
        self.best: Optional[Tensor] = None
        self.idx: Optional[Tensor] = None

    def update(self, prior_idx: Tensor, gt_idx: Tensor, score: Tensor) -> None:
        if len(prior_idx) == 0:
            return
        best = torch.full((self.num_priors,), -math.inf, dtype=self.dtype, device=self.device)
        best.scatter_reduce_(0, prior_idx, score.to(self.dtype), reduce="amax")
        top = (score == best.index_select(0, prior_idx)).nonzero().squeeze(1)
        idx = torch.full((self.num_priors,), _NO_GT, dtype=torch.long, device=self.device)
        idx.scatter_reduce_(
            0, prior_idx.index_select(0, top), gt_idx.index_select(0, top), reduce="amin"
        )
        if self.best is None:
            self.best, self.idx = best, idx
            return
        take = (best > self.best) | ((best == self.best) & (idx < self.idx))
        self.best = torch.where(take, best, self.best)
        self.idx = torch.where(take, idx, self.idx)

    def result(self) -> Tuple[Tensor, Tensor]:
        """(best score, GT index) per prior; (-inf, -1) for a prior without a finite score."""
        if self.best is None:
            best = torch.full((self.num_priors,), -math.inf, dtype=self.dtype, device=self.device)
            return best, torch.full((self.num_priors,), -1, dtype=torch.long, device=self.device)
        none = ~torch.isfinite(self.best) | (self.idx == _NO_GT)
        return self.best, self.idx.masked_fill(none, -1)


_NO_GT = torch.iinfo(torch.long).max


@dataclass
class Windows:
    """Rectangles of grid cells, (M, L, B) of them: for GT m, level l and anchor group b, the
    cells ``k0[m, l, b] .. k1[m, l, b]`` (inclusive (x, y) ranges; empty where k1 < k0). A group
    is every anchor of a cell (B = 1) or, with ``per_anchor``, anchor b alone (B = A)."""

    grid: "PriorGrid"
    k0: Tensor  # (M, L, B, 2) long
    k1: Tensor  # (M, L, B, 2) long
    per_anchor: bool

    @property
    def num_gt(self) -> int:
        return self.k0.shape[0]

    def counts(self) -> Tensor:
        """(M, L, B) pairs of each window."""
        n = (self.k1 - self.k0 + 1).clamp(min=0)
        return n[..., 0] * n[..., 1] * (1 if self.per_anchor else self.grid.num_anchors)

    def num_pairs(self) -> int:
        return int(self.counts().sum())

    def gt_chunks(self, max_pairs: int) -> Iterator[Tuple[int, int]]:
        """(start, end) GT ranges whose windows hold at most ``max_pairs`` pairs (a GT with more
        gets a chunk of its own)."""
        cum = self.counts().flatten(1).sum(dim=1).cumsum(0).tolist()
        start, done = 0, 0
        while start < self.num_gt:
            # the last GT whose cumulated count stays within the budget
            end = bisect.bisect_right(cum, done + max_pairs, lo=start)
            end = max(end, start + 1)
            yield start, end
            done = cum[end - 1]
            start = end

    def pairs(self, start: int = 0, end: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """(gt_idx, prior_idx) of the windows of GTs ``start..end-1``: (P,) each, grouped by
        window (GT, level, anchor), inside a window by prior index.

        Expanded in two steps, both with ``repeat_interleave``: windows into rows of cells, rows
        into pairs (consecutive prior indices for a window of all anchors, every A-th for a
        window of one anchor)."""
        end = self.num_gt if end is None else end
        g = self.grid
        device = self.k0.device
        L, A = g.num_levels, g.num_anchors
        B = self.k0.shape[2]
        k0 = self.k0[start:end].reshape(-1, 2)
        k1 = self.k1[start:end].reshape(-1, 2)
        nx = (k1[:, 0] - k0[:, 0] + 1).clamp(min=0)
        ny = (k1[:, 1] - k0[:, 1] + 1).clamp(min=0) * (nx > 0)
        num_rows = int(ny.sum())
        if num_rows == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        # windows -> rows of cells
        win = torch.repeat_interleave(
            torch.arange(len(ny), device=device), ny, output_size=num_rows
        )
        dy = torch.arange(num_rows, device=device) - (ny.cumsum(0) - ny).index_select(0, win)
        level = torch.div(win, B, rounding_mode="floor") % L
        width = g.widths_t.index_select(0, level)
        first = k0.index_select(0, win)
        row_base = (
            g.starts_t.index_select(0, level) + ((first[:, 1] + dy) * width + first[:, 0]) * A
        )
        if self.per_anchor:
            row_base += win % B  # anchor b of every cell: prior indices A apart
            step, row_len = A, nx.index_select(0, win)
        else:  # every anchor of every cell of a row: consecutive prior indices
            step, row_len = 1, nx.index_select(0, win) * A
        total = int(row_len.sum())
        # rows -> pairs
        row_first = row_len.cumsum(0) - row_len
        r = torch.repeat_interleave(
            torch.arange(num_rows, device=device), row_len, output_size=total
        )
        prior = (row_base - row_first * step).index_select(0, r)
        prior += torch.arange(0, total * step, step, device=device)
        gt_row = start + torch.div(win, L * B, rounding_mode="floor")
        return gt_row.index_select(0, r), prior


def gt_ranges(num_gt: int, pairs_per_gt: int, max_pairs: int) -> Iterator[Tuple[int, int]]:
    """(start, end) GT ranges of at most ``max_pairs`` pairs, at ``pairs_per_gt`` pairs a GT (at
    least one GT a range)."""
    step = max(1, max_pairs // max(pairs_per_gt, 1))
    for start in range(0, num_gt, step):
        yield start, min(start + step, num_gt)


class AllPairs:
    """Every (GT, prior) pair: the candidates of priors that are not laid out on a grid
    (:meth:`PriorGrid.of` returns None), with the interface of :class:`Windows` that
    :func:`pairs_in_chunks` uses. Pairs come GT by GT, inside a GT by prior index."""

    def __init__(self, num_gt: int, num_priors: int, device):
        self.num_gt = int(num_gt)
        self.num_priors = int(num_priors)
        self.device = device

    def num_pairs(self) -> int:
        return self.num_gt * self.num_priors

    def gt_chunks(self, max_pairs: int) -> Iterator[Tuple[int, int]]:
        return gt_ranges(self.num_gt, self.num_priors, max_pairs)

    def pairs(self, start: int = 0, end: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        end = self.num_gt if end is None else end
        gts = torch.arange(start, end, device=self.device)
        priors = torch.arange(self.num_priors, device=self.device)
        return gts.repeat_interleave(self.num_priors), priors.repeat(end - start)


def _same_key(a, b) -> bool:
    return all(x is y if isinstance(x, Tensor) else x == y for x, y in zip(a, b))


class PriorGrid:
    """The per-level grid layout of a :class:`~dense_assign.structures.Priors` (see module doc)."""

    def __init__(self, priors, tol: float):
        device = priors.centers.device
        self.num_levels = priors.num_levels
        self.num_anchors = int(priors.num_anchors)
        self.offset = float(priors.offset)
        self.heights = [int(h) for h, _ in priors.grid_sizes]
        self.widths = [int(w) for _, w in priors.grid_sizes]
        self.strides = [float(s) for s in priors.level_strides]
        self.starts = starts = priors.level_starts
        self.num_priors = len(priors)
        self.tol = float(tol)
        self.device = device
        self.starts_t = torch.tensor(starts, dtype=torch.long, device=device)
        self.widths_t = torch.tensor(self.widths, dtype=torch.long, device=device)
        self.sizes_t = torch.tensor(
            [[w, h] for w, h in zip(self.widths, self.heights)], dtype=torch.long, device=device
        ).reshape(-1, 2)
        self.strides_t = torch.tensor(self.strides, dtype=torch.float64, device=device)
        self._priors = priors
        self._shapes = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, priors) -> Optional["PriorGrid"]:
        """The grid of ``priors``, or None when they are not laid out on one.

        Kept on the :class:`~dense_assign.structures.Priors` object, keyed by its tensors, their
        in-place versions and its layout: the assigners of every image of a batch share one
        measurement."""
        layout = (
            tuple(int(n) for n in priors.level_sizes),
            tuple(tuple(int(v) for v in s) for s in priors.grid_sizes),
            tuple(float(s) for s in priors.level_strides),
            int(priors.num_anchors),
            float(priors.offset),
        )
        key = (priors.centers, priors.centers._version, priors.boxes, priors.boxes._version, layout)
        cached = priors.__dict__.get("_prior_grid")
        if cached is not None and _same_key(cached[0], key):
            return cached[1]
        grid = cls._build(priors)
        priors.__dict__["_prior_grid"] = (key, grid)
        return grid

    @staticmethod
    def forget(priors) -> None:
        """Drop the grid kept on ``priors`` (the next :meth:`of` measures it again)."""
        priors.__dict__.pop("_prior_grid", None)

    @classmethod
    def _build(cls, priors) -> Optional["PriorGrid"]:
        L, A = priors.num_levels, int(priors.num_anchors)
        if (
            A < 1
            or L == 0
            or len(priors.grid_sizes) != L
            or len(priors.level_strides) != L
            or not math.isfinite(float(priors.offset))
            or sum(priors.level_sizes) != len(priors)
        ):
            return None
        devs, start = [], 0
        for (h, w), s, n in zip(priors.grid_sizes, priors.level_strides, priors.level_sizes):
            h, w, n = int(h), int(w), int(n)
            if h * w * A != n or not float(s) > 0:
                return None
            if n == 0:
                continue
            c = priors.centers[start : start + n].reshape(h, w, A, 2)
            # ideal coordinates (float64) rounded to the centres' dtype, the centres' distance to
            # them (exact: close values), plus that rounding
            ideal = (
                torch.arange(max(h, w), dtype=torch.float64, device=c.device) + priors.offset
            ) * float(s)
            near = ideal.to(c.dtype)
            devs.append(
                torch.stack(
                    (
                        (c[..., 0] - near[None, :w, None]).abs().amax().double(),
                        (c[..., 1] - near[:h, None, None]).abs().amax().double(),
                    )
                ).amax()
                + (near.double() - ideal).abs().amax()
            )
            start += n
        tol = float(torch.stack(devs).amax()) * (1 + 1e-6) if devs else 0.0
        if not math.isfinite(tol) or tol > 0.25 * min(float(s) for s in priors.level_strides):
            return None  # not a grid: every pair is a candidate (AllPairs)
        return cls(priors, tol)

    # ------------------------------------------------------------------ geometry
    def slack(self, value: Tensor) -> Tensor:
        """How far (pixels) a window bound at ``value`` is widened (see module doc)."""
        return self.tol + ABS_SLACK + REL_SLACK * value.abs().nan_to_num(nan=0.0, posinf=0.0)

    def cell_ranges(self, lo: Tensor, hi: Tensor) -> Tuple[Tensor, Tensor]:
        """Cells whose ideal centre lies in [lo - slack, hi + slack] per axis, clipped to the
        grid: (k0, k1) long, inclusive, for (..., L, 2) pixel bounds ``lo`` / ``hi`` as (x, y)
        (an empty range has k1 < k0)."""
        lo, hi = lo.double(), hi.double()
        lo = lo - self.slack(lo)
        hi = hi + self.slack(hi)
        s = self.strides_t[:, None]
        size = self.sizes_t.to(torch.float64)
        k0 = torch.ceil(lo / s - self.offset)
        k1 = torch.floor(hi / s - self.offset)
        k0 = torch.minimum(torch.nan_to_num(k0, nan=math.inf).clamp(min=0), size)
        k1 = torch.minimum(torch.nan_to_num(k1, nan=-math.inf), size - 1).clamp(min=-1)
        return k0.long(), k1.long()

    def windows(self, lo: Tensor, hi: Tensor) -> Windows:
        """Windows of cells for (M, L, 2) or (M, L, A, 2) pixel bounds (x, y) of the candidates'
        centres: with the A axis, window a covers anchor a of every cell, else all anchors."""
        if lo.dim() == 4:
            k0, k1 = self.cell_ranges(lo.transpose(1, 2), hi.transpose(1, 2))  # (M, A, L, 2)
            return Windows(self, k0.transpose(1, 2), k1.transpose(1, 2), per_anchor=True)
        k0, k1 = self.cell_ranges(lo, hi)
        return Windows(self, k0[:, :, None], k1[:, :, None], per_anchor=False)

    def anchor_extents(self) -> Tensor:
        """(L, A, 4) float64: per level and anchor, the largest (cx - x0, cy - y0, x1 - cx,
        y1 - cy) of its prior boxes relative to their centres (0 for an empty level)."""
        return self.anchor_shapes()["extents"]

    def anchor_shapes(self) -> dict:
        """Per level and anchor ((L, A) float64 tensors): the largest width ``w_max`` and height
        ``h_max`` and the smallest area ``area_min`` of its prior boxes, and ``extents``
        ((L, A, 4), :meth:`anchor_extents`). Computed once per grid."""
        if self._shapes is None:
            p, A, L = self._priors, self.num_anchors, self.num_levels
            ext = torch.zeros((L, A, 4), dtype=torch.float64, device=self.device)
            w_max = torch.zeros((L, A), dtype=torch.float64, device=self.device)
            h_max, area_min = w_max.clone(), w_max.clone()
            for lvl, (start, h, w) in enumerate(zip(self.starts, self.heights, self.widths)):
                n = h * w * A
                if n == 0:
                    continue
                # coordinates as contiguous (A, HW) planes; in the boxes' dtype (a rounding of
                # an extent is far below the windows' slack)
                x0, y0, x1, y1 = (
                    p.boxes[start : start + n].reshape(-1, A, 4).permute(2, 1, 0).contiguous()
                )
                cx, cy = (
                    p.centers[start : start + n].reshape(-1, A, 2).permute(2, 1, 0).contiguous()
                )
                sides = torch.stack((cx - x0, cy - y0, x1 - cx, y1 - cy))  # (4, A, HW)
                ext[lvl] = sides.amax(dim=2).t().double()
                wb, hb = x1 - x0, y1 - y0
                w_max[lvl] = wb.amax(dim=1).double()
                h_max[lvl] = hb.amax(dim=1).double()
                area_min[lvl] = (wb * hb).amin(dim=1).double()
            self._shapes = {"extents": ext, "w_max": w_max, "h_max": h_max, "area_min": area_min}
        return self._shapes

    def nearest_cells(self, centers: Tensor) -> Tensor:
        """(m, L, A) indices of the priors of the cell nearest each (m, 2) centre on every level
        (clamped into the grid; index 0 on an empty level)."""
        out = []
        for lvl, (h, w, s) in enumerate(zip(self.heights, self.widths, self.strides)):
            u = torch.nan_to_num(torch.round(centers.double() / s - self.offset), nan=0.0)
            x = u[:, 0].clamp(0, max(w - 1, 0)).long()
            y = u[:, 1].clamp(0, max(h - 1, 0)).long()
            first = self.starts[lvl] + (y * w + x) * self.num_anchors
            idx = first[:, None] + torch.arange(self.num_anchors, device=centers.device)
            out.append(idx.clamp(max=max(self.num_priors - 1, 0)))
        return torch.stack(out, dim=1)

    # ------------------------------------------------------------------ nearest priors
    def nearest_window_size(self, level: int, cells: int) -> Optional[Tuple[int, int]]:
        """(Sx, Sy) of the window of :meth:`nearest_windows` on ``level`` for the ``cells``
        nearest cells, None when the level has fewer cells (search the whole level).

        A (2h+1)-square (:func:`window_side`), cut to a short axis and then widened along the
        other one until it holds ``cells`` cells."""
        H, W = self.heights[level], self.widths[level]
        if H * W < cells or cells <= 0:
            return None
        side = window_side(cells)
        sx, sy = min(W, side), min(H, side)
        if sx * sy < cells:  # one axis is short: widen the other
            if sx == W:
                sy = min(H, -(-cells // sx))
            else:
                sx = min(W, -(-cells // sy))
        return sx, sy

    def nearest_windows(self, levels: List[int], centers: Tensor, size: Tuple[int, int]):
        """Windows of ``size`` (Sx, Sy) cells around the cell nearest each of the (m, 2)
        ``centers`` on each of ``levels`` (shifted inside the grid at its borders): ((m, L', n)
        prior indices, ascending along n; (m, L', 2) long window origins (x0, y0))."""
        device = centers.device
        sx, sy = size
        A = self.num_anchors
        lv = torch.tensor(levels, device=device)
        strides = self.strides_t.index_select(0, lv)  # (L',)
        dims = self.sizes_t.index_select(0, lv)  # (L', 2) as (W, H)
        u = centers.double()[:, None] / strides[None, :, None] - self.offset  # (m, L', 2)
        nearest = torch.nan_to_num(torch.round(u), nan=0.0).clamp(-1e9, 1e9).long()
        win = torch.tensor([sx, sy], device=device)
        origin = torch.minimum((nearest - (win - 1) // 2).clamp(min=0), dims - win)  # (m, L', 2)
        dx = torch.arange(sx, device=device)
        dy = torch.arange(sy, device=device)
        width = dims[:, 0][None, :, None, None]
        cell = (origin[..., 1, None, None] + dy[:, None]) * width + origin[..., 0, None, None] + dx
        first = self.starts_t.index_select(0, lv)[None, :, None, None]
        idx = (first + cell * A)[..., None] + torch.arange(A, device=device)  # (m, L', sy, sx, A)
        return idx.flatten(2), origin

    def nearest_window_ok(
        self, levels: List[int], centers: Tensor, origin: Tensor, size: Tuple[int, int], kth: Tensor
    ) -> Tensor:
        """(m, L') bool: whether every prior of the level outside the window is strictly farther
        (L2, pixels) from the centre than ``kth`` ((m, L') pixels), with margins for the centres'
        deviation from the grid and float rounding; then the window holds the k nearest priors
        and every prior tied with the k-th.

        A prior outside the window has its column (row) outside the window's: at least as far
        along x as the nearest outside column, and along y as the nearest row at all."""
        device = centers.device
        lv = torch.tensor(levels, device=device)
        s = self.strides_t.index_select(0, lv)[None, :, None]  # (1, L', 1)
        dims = self.sizes_t.index_select(0, lv).double()[None]  # (1, L', 2)
        c = centers.double()[:, None]  # (m, 1, 2)
        win = torch.tensor(size, dtype=torch.float64, device=device)
        o = origin.double()
        # in cells: the centre's coordinate, the window's columns o .. o + S - 1, the grid's
        # 0 .. D - 1; distances to the nearest column (row) left / right of the window, anywhere
        u = c / s - self.offset
        left = torch.where(o > 0, (u - (o - 1)).clamp(min=0), torch.full_like(o, math.inf))
        right = torch.where(
            o + win < dims, (o + win - u).clamp(min=0), torch.full_like(o, math.inf)
        )
        outside = torch.minimum(left, right)
        anywhere = torch.maximum(-u, u - (dims - 1)).clamp(min=0)
        bound2 = torch.minimum(
            outside[..., 0] ** 2 + anywhere[..., 1] ** 2,
            outside[..., 1] ** 2 + anywhere[..., 0] ** 2,
        )
        bound = bound2.sqrt() * s[..., 0]  # pixels
        kth = kth.double()
        margin = (
            2 * self.tol
            + ABS_SLACK
            + REL_SLACK * (kth + c.abs().amax(dim=2) + bound.nan_to_num(posinf=0.0))
        )
        ok = kth * (1 + REL_SLACK) + margin < bound * (1 - REL_SLACK)
        return ok & torch.isfinite(kth) & torch.isfinite(c).all(dim=2)


def window_side(cells: int) -> int:
    """Side 2h+1 of the square window of :meth:`PriorGrid.nearest_windows` for ``cells``
    nearest cells: the (2a+1)-square around the nearest cell holds them, at most
    sqrt(2) (a + 1/2) cells from an interior centre, and every cell outside the window is at least
    h + 1/2 away."""
    a = math.ceil((math.sqrt(max(cells, 1)) - 1) / 2)
    half = math.floor(math.sqrt(2.0) * (a + 0.5) - 0.5) + 1
    return 2 * half + 1


def nearest_candidates(
    grid: Optional[PriorGrid],
    centers: Tensor,
    ks: List[int],
    distance_fn,
    whole_level_fn,
    units: Optional[List[float]] = None,
) -> List[Tensor]:
    """Per level l, the (m, ks[l]) indices (ascending) of the ``ks[l]`` priors of level l
    nearest the (m, 2) ``centers`` by ``distance_fn(idx) -> values`` (any shape, elementwise;
    squared distances in units of ``units[l]`` pixels, default 1), ties to the lowest index; an
    empty (m, 0) for ``ks[l] == 0``.

    Levels with windows of the same size are searched together in their windows
    (:meth:`PriorGrid.nearest_windows`); the GTs whose window fails the check, and every GT of a
    level without a window (or without a grid), get ``whole_level_fn(level, rows) -> (r, ks[l])``.
    """
    m, device = len(centers), centers.device
    L = len(ks)
    units = units or [1.0] * L
    out: List[Optional[Tensor]] = [None] * L
    groups = {}
    for level, k in enumerate(ks):
        if k <= 0:
            out[level] = torch.zeros((m, 0), dtype=torch.long, device=device)
            continue
        size = None if grid is None else grid.nearest_window_size(level, -(-k // grid.num_anchors))
        if size is None:
            out[level] = whole_level_fn(level, torch.arange(m, device=device))
        else:
            groups.setdefault((size, k), []).append(level)
    for (size, k), levels in groups.items():
        idx, origin = grid.nearest_windows(levels, centers, size)  # (m, L', n)
        n = idx.shape[2]
        values = distance_fn(idx.reshape(m, -1)).view(m * len(levels), n)
        pick = k_smallest(values, k)  # (m L', k)
        kth = values.gather(1, pick).amax(dim=1).view(m, len(levels))
        unit = torch.tensor([units[lv] for lv in levels], dtype=torch.float64, device=device)
        ok = grid.nearest_window_ok(
            levels, centers, origin, size, kth.double().clamp(min=0).sqrt() * unit
        )
        found = idx.view(m * len(levels), n).gather(1, pick).view(m, len(levels), k)
        for j, level in enumerate(levels):
            result = found[:, j]
            if not bool(ok[:, j].all()):
                rows = (~ok[:, j]).nonzero(as_tuple=True)[0]
                result = result.clone()
                result[rows] = whole_level_fn(level, rows)
            out[level] = result
    return out


def pairs_in_chunks(windows, max_pairs: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """The pairs of ``windows`` (:class:`Windows` or :class:`AllPairs`) in chunks of whole GTs
    holding at most ``max_pairs`` pairs."""
    if windows.num_pairs() <= max_pairs:
        yield windows.pairs()
        return
    for start, end in windows.gt_chunks(max_pairs):
        yield windows.pairs(start, end)

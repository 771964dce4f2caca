"""Geometry shared by the assigners, the losses and the analysis tools: one function each.

Boxes are absolute XYXY. "Aligned" functions pair element i of one argument with element i of the
other and broadcast over leading dimensions, so the same function serves a pair list ((P, 2)
points with (P, 4) boxes) and a dense matrix (``points[None]`` with ``boxes[:, None]``) with the
very same floating-point operations.

- :func:`ltrb`: distances (l, t, r, b) of points to box edges; :func:`inside`, the test that
  they are all positive.
- :func:`pair_iou`: IoU of matched box pairs, differentiable.
- :func:`take_rows`: rows of a table gathered by a pair list, laid out for elementwise work.
- :func:`centerness`: FCOS's centerness and SAPD's generalized form (an exponent).
- :func:`level_table`: a per-pyramid-level value table, with a default for levels it misses.

Why not detectron2's ``matched_pairwise_iou``: it divides 0 by 0 for two empty boxes (NaN) and
takes the area of an inverted (predicted) box as negative. :func:`pair_iou` does the same
arithmetic as detectron2's ``pairwise_iou`` on valid boxes (so a pair gets the value of the dense
IoU matrix), and is 0 where the boxes do not intersect.
"""

from typing import List, Optional, Sequence

import torch
from torch import Tensor


def ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """(..., 4) distances (l, t, r, b) of (..., 2) ``points`` to the edges of (..., 4)
    ``boxes`` (broadcast); all positive when the point is strictly inside the box."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack(
        (x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y), dim=-1
    )


def inside(points: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:
    """(...,) bool: each of the distances (l, t, r, b) of :func:`ltrb` above ``margin``, i.e.
    ``ltrb(points, boxes).min(dim=-1).values > margin``, NaN included (False), with the same
    subtractions, but without stacking the distances into an (..., 4) tensor and reducing it
    (slower on a long pair list, issue #20)."""
    x, y = points[..., 0], points[..., 1]
    return (
        ((x - boxes[..., 0]) > margin)
        & ((y - boxes[..., 1]) > margin)
        & ((boxes[..., 2] - x) > margin)
        & ((boxes[..., 3] - y) > margin)
    )


def box_centers(boxes: Tensor) -> Tensor:
    """(..., 2) centres of (..., 4) boxes."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def take_rows(columns: Tensor, idx: Tensor) -> Tensor:
    """(P, C) the rows ``idx`` of an (N, C) table given as its (C, N) transpose ``columns``
    (``table.t().contiguous()``): a view whose columns are each contiguous in memory.

    For gathering boxes (or points) by a long pair list: the elementwise work that follows runs
    on contiguous columns, not on every fourth float of gathered rows, which is faster on a CPU
    (issue #20; README, the fourth round). The values are
    those of ``table.index_select(0, idx)``, and so are the gradients: each element's
    contributions are summed in the same (list) order."""
    return columns.index_select(1, idx).t()


def pair_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """(...,) IoU of ``boxes1[i]`` with ``boxes2[i]`` ((..., 4) each, broadcast); 0 where they
    do not intersect. Differentiable in both arguments; an inverted box has area 0.

    ``eps`` only bounds the union away from 0 (never reached by pairs that intersect)."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * (
        boxes1[..., 3] - boxes1[..., 1]
    ).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * (
        boxes2[..., 3] - boxes2[..., 1]
    ).clamp(min=0)
    wh = (
        torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
        - torch.maximum(boxes1[..., :2], boxes2[..., :2])
    ).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (area1 + area2 - inter).clamp(min=eps)
    return torch.where(inter > 0, iou, torch.zeros_like(iou))


def centerness(distances: Tensor, exponent: float = 0.5) -> Tensor:
    """(...,) ``[min(l, r) / max(l, r) * min(t, b) / max(t, b)] ** exponent`` of (..., 4)
    (l, t, r, b) distances (:func:`ltrb`).

    ``exponent`` 0.5 is FCOS's centerness (Eq. 3 of its paper: the square root); SAPD's soft
    point weight (Eq. 4 of its paper) is the same ratio to the power eta. Defined for points
    inside their box; a negative ratio (a point outside) and 0 / 0 (a zero-width or zero-height
    box) give 0."""
    lr = distances[..., 0::2]
    tb = distances[..., 1::2]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (
        tb.min(dim=-1).values / tb.max(dim=-1).values
    )
    ratio = ratio.nan_to_num(nan=0.0).clamp(min=0)  # 0 / 0 on a degenerate box: 0
    return torch.sqrt(ratio) if exponent == 0.5 else ratio.pow(exponent)


def level_table(
    values: Optional[Sequence], num_levels: int, default: float, dtype, device
) -> Tensor:
    """(num_levels,) tensor of one value per pyramid level, ``default`` for the levels beyond
    ``values`` (or all of them when ``values`` is None)."""
    per_level: List[float] = [
        float(values[i]) if values is not None and i < len(values) else default
        for i in range(num_levels)
    ]
    return torch.tensor(per_level, dtype=dtype, device=device)

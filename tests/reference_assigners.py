"""Dense references of the assigners, for the equality tests.

Each package assigner evaluates its rule on candidate (GT, prior) pairs from per-GT windows of the
prior grid (dense_assign/assigners/candidates.py). The references here evaluate the same rule on
dense (GT chunk, R) matrices over every prior, the way the assigners computed it before the
windows, and reduce over GTs with a dense ``max(dim=0)``. :func:`make_reference` turns a configured
assigner into its reference: a copy of it whose candidate step is replaced by the dense one (the
rest, e.g. AutoAssign's weights or SAPD's level selection, is the assigner's own code).
"""

import copy
import math

import torch
from detectron2.structures import Boxes, pairwise_iou

from dense_assign.assigners import (
    ATSSAssigner,
    AutoAssign,
    FCOSAssigner,
    MaxIoUAssigner,
    SAPDAssigner,
)
from dense_assign.assigners.candidates import k_smallest
from dense_assign.box_ops import box_centers, ltrb

#: (GT, prior) pairs a dense matrix chunk holds at most
CHUNK_PAIRS = 1 << 22


def gt_chunks(num_gt: int, num_priors: int, chunk_pairs: int = CHUNK_PAIRS):
    step = max(1, chunk_pairs // max(num_priors, 1))
    for start in range(0, num_gt, step):
        yield start, min(start + step, num_gt)


def best_gt_per_prior(score_fn, num_gt: int, num_priors: int, device):
    """Per prior, the maximum of ``score_fn(start, end)`` ((end - start, R), -inf for no pair)
    over GTs and its GT index (ties: lowest GT index; -1 where no GT has a finite score)."""
    best = torch.full((num_priors,), -math.inf, device=device)
    idx = torch.full((num_priors,), -1, dtype=torch.long, device=device)
    for start, end in gt_chunks(num_gt, num_priors):
        value, arg = score_fn(start, end).max(dim=0)
        better = value > best
        best = torch.where(better, value, best)
        idx = torch.where(better, arg + start, idx)
    idx[~torch.isfinite(best)] = -1
    return best, idx


def per_level(priors, values, default):
    table = [float(values[i]) if i < len(values) else default for i in range(priors.num_levels)]
    return torch.tensor(table, dtype=priors.centers.dtype, device=priors.centers.device)[
        priors.levels
    ]


# ---------------------------------------------------------------------------------------- FCOS
def fcos_candidate_mask(a: FCOSAssigner, priors, boxes):
    """(m, R) bool: the FCOS rules (inside, center sampling, scale range) on every pair."""
    d = ltrb(priors.centers[None], boxes[:, None])  # (m, R, 4)
    mask = d.min(dim=2).values > 0
    if a.center_sampling_radius is not None:
        dist = (priors.centers[None] - box_centers(boxes)[:, None]).abs().max(dim=2).values
        mask &= dist < a.center_sampling_radius * priors.strides[None]
    if a.scale_ranges is not None:
        lo = per_level(priors, [r[0] for r in a.scale_ranges], math.inf)
        hi = per_level(priors, [r[1] for r in a.scale_ranges], -math.inf)
        size = d.max(dim=2).values
        if a.inclusive_ranges:
            mask &= (size >= lo[None]) & (size <= hi[None])
        else:
            mask &= (size > lo[None]) & (size < hi[None])
    return mask


class DenseFCOS:
    """FCOS, inside-box, Pseudo-IoU: the minimum-area GT among those whose rules a prior passes."""

    def match(self, priors, gt_boxes, areas):
        def score(start, end):
            mask = fcos_candidate_mask(self, priors, gt_boxes[start:end])
            return torch.where(mask, -areas[start:end, None], areas.new_tensor(-math.inf))

        return best_gt_per_prior(score, len(gt_boxes), len(priors), gt_boxes.device)[1]


# -------------------------------------------------------------------------------------- max-IoU
class DenseMaxIoU:
    """The IoU matrix in GT chunks, detectron2's Matcher rules (with low-quality matches)."""

    @torch.no_grad()
    def assign(self, priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor

        def ious(start, end):
            return pairwise_iou(Boxes(gt_boxes[start:end]), Boxes(priors.boxes))

        best_iou, best_gt = best_gt_per_prior(ious, len(gt_boxes), len(priors), gt_boxes.device)
        best_gt = best_gt.clamp(min=0)  # every prior has a best GT (IoU may be 0)
        low_quality = torch.zeros_like(best_iou, dtype=torch.bool)
        if self.allow_low_quality_matches:
            chunks = list(gt_chunks(len(gt_boxes), len(priors)))
            gt_max = torch.cat([ious(s, e).max(dim=1).values for s, e in chunks])
            for s, e in chunks:
                hit = (ious(s, e) == gt_max[s:e, None]) & (gt_max[s:e, None] > 0)
                low_quality |= hit.any(dim=0)
        return self._result(gt_instances, best_iou, best_gt, low_quality)


# ----------------------------------------------------------------------------------------- ATSS
class DenseATSS:
    """The k nearest priors searched over whole levels; positives reduced on (m, R) matrices."""

    def prior_grid(self, priors):
        return None

    @torch.no_grad()
    def assign(self, priors, gt_instances, predictions=None, image_size=None):
        gt_boxes = gt_instances.gt_boxes.tensor
        match_boxes = self.matching_boxes(priors)
        R = len(priors)
        thresholds = []

        def score(start, end):
            cand, ious, positive, thresh = self.select(priors, match_boxes, gt_boxes[start:end])
            thresholds.append(thresh)
            out = torch.full((len(cand), R), -math.inf, device=gt_boxes.device)
            out.scatter_(1, cand, torch.where(positive, ious, out.new_tensor(-math.inf)))
            return out

        _, matched = best_gt_per_prior(score, len(gt_boxes), R, gt_boxes.device)
        result = self.result_from_matches(gt_instances, matched)
        result.stats["iou_threshold_mean"] = torch.cat(thresholds).mean()
        return result


# ----------------------------------------------------------------------------------- AutoAssign
class DenseAutoAssign:
    """Inside masks, fallback ranking and maximum IoU on GTs x all points."""

    @torch.no_grad()
    def candidate_pairs(self, priors, gt_boxes):
        num_gt, num_points = len(gt_boxes), len(priors)
        none = torch.zeros(0, dtype=torch.long, device=gt_boxes.device)
        if num_points == 0:
            return none, none, 0
        gts, pts, num_fallback = [none], [none], 0
        for start, end in gt_chunks(num_gt, num_points):
            boxes = gt_boxes[start:end]
            inside = ltrb(priors.centers[None], boxes[:, None]).min(dim=2).values > 0
            g, p = inside.nonzero(as_tuple=True)
            empty = (~inside.any(dim=1)).nonzero(as_tuple=True)[0]
            if len(empty):
                num_fallback += len(empty)
                k = min(self.fallback_topk, num_points)
                d = (priors.centers[None] - box_centers(boxes[empty])[:, None]) / priors.strides[
                    None, :, None
                ]
                top = k_smallest((d**2).sum(dim=2), k)
                g = torch.cat([g, empty[:, None].expand(-1, k).reshape(-1)])
                p = torch.cat([p, top.reshape(-1)])
                order = torch.argsort(g * num_points + p)
                g, p = g[order], p[order]
            gts.append(g + start)
            pts.append(p)
        return torch.cat(gts), torch.cat(pts), num_fallback

    @torch.no_grad()
    def max_iou(self, priors, point_boxes, gt_boxes, points):
        boxes = Boxes(point_boxes)  # the predicted boxes of ``points``
        out = point_boxes.new_zeros(len(points))
        for start, end in gt_chunks(len(gt_boxes), len(points)):
            iou = pairwise_iou(Boxes(gt_boxes[start:end]), boxes)
            out = torch.maximum(out, iou.max(dim=0).values)
        return out


# ----------------------------------------------------------------------------------------- SAPD
def sapd_candidate_mask(a: SAPDAssigner, priors, boxes):
    """(m, R) bool: the positive region of each GT on every level: the points inside B_v, and on
    a level with none of them the point nearest the box centre."""
    mask = a.in_valid_box(priors.centers[None], boxes[:, None])  # (m, R)
    has = torch.stack([x.any(dim=1) for x in priors.split(mask, dim=1)], dim=1)  # (m, L)
    nearest, valid = a.nearest_points(priors, box_centers(boxes))
    gi, li = (valid & ~has).nonzero(as_tuple=True)
    mask[gi, nearest[gi, li]] = True
    return mask


class DenseSAPD:
    def match(self, priors, gt_boxes):
        area = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=0).prod(dim=1)

        def score(start, end):
            mask = sapd_candidate_mask(self, priors, gt_boxes[start:end])
            return torch.where(mask, -area[start:end, None], area.new_tensor(-math.inf))

        return best_gt_per_prior(score, len(gt_boxes), len(priors), gt_boxes.device)[1]


#: reference mixin of each assigner family (the first match in order)
FAMILIES = (
    (SAPDAssigner, DenseSAPD),
    (AutoAssign, DenseAutoAssign),
    (ATSSAssigner, DenseATSS),
    (MaxIoUAssigner, DenseMaxIoU),
    (FCOSAssigner, DenseFCOS),
)


def make_reference(assigner):
    """A copy of ``assigner`` (same parameters and state) computing on dense matrices."""
    for family, mixin in FAMILIES:
        if isinstance(assigner, family):
            ref = copy.deepcopy(assigner)
            ref.__class__ = type(f"Dense{type(assigner).__name__}", (mixin, type(assigner)), {})
            return ref
    raise TypeError(f"no dense reference for {type(assigner).__name__}")

"""Dynamic soft label assignment (RTMDet).

Paper: "RTMDet: An Empirical Study of Designing Real-Time Object Detectors" (Lyu et al., 2022,
arXiv:2212.07784), Sec. 3.3 "Dynamic soft label assignment"; official code: mmdetection's
``DynamicSoftLabelAssigner`` (docs/methods.md, "SimOTA and dynamic soft labels").

Rule: the candidates of a GT are the priors whose centre lies strictly inside its box; cost = the
soft-label classification cost (BCE of the class logits against the one-hot x IoU soft label,
scaled by |soft label - sigmoid|^2, summed over the classes) + 3 x (-log IoU of the predicted box)
+ the soft centre prior 10^(d / stride - 3), d the distance of the prior centre to the GT centre.
Each GT takes its k lowest-cost candidates, k = max(1, int(sum of its 13 largest candidate IoUs));
a prior taken by several GTs keeps the one of lowest cost; positives train towards the IoU of their
predicted box (:mod:`.dynamic_k`).

Differences from the official code:

- Candidates are per GT: a GT's pairs are the priors inside *its* box. mmdetection scores every GT
  against every prior inside *any* GT (and its k sums the 13 largest IoUs over those priors;
  mmyolo's batched version over all priors), so a GT could also take a prior inside another GT,
  e.g. a GT smaller than a stride with no prior inside it. Here such a GT gets no positive. Per-GT
  candidates keep the work and memory proportional to the candidate pairs.
- The class terms are float32 as in the official code; the cost is summed in float64, with the
  centre prior's exponent capped at 300 (10^300), so that priors far from a huge box's centre stay
  finite (in float32 it overflows from d / stride = 41.5). Ties are broken deterministically
  (lowest prior index within a GT, lowest GT index at a prior).
- The classification cost sums over every class, as mmdetection; mmyolo's batched assigner keeps
  the GT's class only.
"""

import torch
from torch import Tensor

from ..box_ops import box_centers, inside, take_rows
from ..losses.functional import quality_focal_loss
from ..registry import ASSIGNER_REGISTRY
from ..structures import DensePredictions, Priors
from .candidates import PriorGrid, Windows
from .dynamic_k import DynamicKAssigner, PriorClassSums, pair_logits

#: The centre prior is 10^(d / stride - soft_center_radius) (mmdetection ``soft_center_radius=3.0``).
SOFT_CENTER_RADIUS = 3.0
#: IoUs summed into a GT's dynamic k (RTMDet configs: ``DynamicSoftLabelAssigner(topk=13)``).
TOPK = 13
#: Weight of the -log IoU cost (mmdetection ``iou_weight=3.0``).
IOU_WEIGHT = 3.0
#: IoU floor inside -log (mmdetection ``EPS = 1.0e-7``).
IOU_EPS = 1e-7
#: Exponent of the |soft label - sigmoid| scale of the classification cost (mmdetection: 2.0).
SCALE_POWER = 2.0
#: Cap of the centre prior's exponent (float64 stays finite; no effect below d / stride = 303).
MAX_EXPONENT = 300.0


@ASSIGNER_REGISTRY.register()
class DynamicSoftLabelAssigner(DynamicKAssigner):
    """RTMDet's dynamic soft label assignment on per-GT candidate pairs (see module doc)."""

    def __init__(
        self,
        *,
        num_classes: int,
        soft_center_radius: float = SOFT_CENTER_RADIUS,
        topk: int = TOPK,
        iou_weight: float = IOU_WEIGHT,
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            soft_center_radius: r of the centre prior 10^(d / stride - r).
            topk: q, the largest candidate IoUs summed into a GT's k.
            iou_weight: weight of the -log IoU cost.
            box2box_transform, chunk_pairs: see :class:`~.dynamic_k.DynamicKAssigner`.
        """
        super().__init__(
            num_classes=num_classes, topq=topk, box2box_transform=box2box_transform, **kwargs
        )
        if not iou_weight >= 0 or not abs(float(soft_center_radius)) < float("inf"):
            raise ValueError(
                "model.assigner needs iou_weight >= 0 and a finite soft_center_radius, got "
                f"{iou_weight}, {soft_center_radius}"
            )
        self.soft_center_radius = float(soft_center_radius)
        self.iou_weight = float(iou_weight)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, soft_center_radius={self.soft_center_radius}, "
            f"topk={self.topq}, iou_weight={self.iou_weight}"
        )

    # ------------------------------------------------------------------------- candidates
    def candidate_windows(self, grid: PriorGrid, gt_boxes: Tensor) -> Windows:
        """Per GT and level, the cells inside the box."""
        L = grid.num_levels
        boxes = gt_boxes.double()
        return grid.windows(
            boxes[:, None, :2].expand(-1, L, -1), boxes[:, None, 2:].expand(-1, L, -1)
        )

    def candidates(self, priors: Priors, gt_boxes: Tensor, gt_idx: Tensor, prior_idx: Tensor):
        """Pairs whose prior centre is strictly inside the box (min(l, t, r, b) > 0)."""
        points = take_rows(priors.center_columns(), prior_idx)
        boxes = take_rows(gt_boxes.t().contiguous(), gt_idx)
        return inside(points, boxes), {}

    # ------------------------------------------------------------------------- cost
    def prior_terms(self, predictions: DensePredictions):
        logits = predictions.logits.detach()
        return {
            "logits": logits,
            # every class's cost against a soft label of 0
            "neg_sum": PriorClassSums(logits, lambda x: _soft_cls(x, 0.0)),
        }

    def center_prior(self, priors: Priors, gt_boxes: Tensor, gt_idx: Tensor, prior_idx: Tensor):
        """(P,) float64 10^(d / stride - soft_center_radius)."""
        points = priors.centers.index_select(0, prior_idx).double()
        centers = box_centers(gt_boxes.index_select(0, gt_idx).double())
        distance = (points - centers).pow(2).sum(dim=1).sqrt()
        distance = distance / priors.strides.index_select(0, prior_idx).double()
        return torch.pow(10.0, (distance - self.soft_center_radius).clamp(max=MAX_EXPONENT))

    def pair_cost(self, priors, terms, gt_boxes, gt_classes, gt_idx, prior_idx, iou, extra):
        """Soft classification cost (every class against 0, the GT class's term swapped for the
        one against the IoU) + iou_weight x -log(IoU + eps) + the centre prior."""
        x = pair_logits(terms["logits"], prior_idx, gt_classes.index_select(0, gt_idx)).float()
        cls_cost = (
            terms["neg_sum"].take(prior_idx)
            - _soft_cls(x, 0.0).double()
            + _soft_cls(x, iou.float()).double()
        )
        iou_cost = -torch.log(iou.double() + IOU_EPS)
        return (
            cls_cost
            + self.iou_weight * iou_cost
            + self.center_prior(priors, gt_boxes, gt_idx, prior_idx)
        )


def _soft_cls(logits: Tensor, soft_label) -> Tensor:
    """Elementwise soft-label class cost (float32, as the official code): BCE-with-logits against
    the soft label, scaled by |soft label - sigmoid|^2; ``soft_label`` a tensor or a constant."""
    if not isinstance(soft_label, Tensor):
        soft_label = torch.full_like(logits, soft_label)
    return quality_focal_loss(logits, soft_label, SCALE_POWER)

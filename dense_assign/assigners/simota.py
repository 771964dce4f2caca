"""SimOTA: YOLOX's simplified optimal-transport assignment.

Paper: "YOLOX: Exceeding YOLO Series in 2021" (Ge et al., 2021, arXiv:2107.08430), Sec. 2.1
"SimOTA"; official code ``yolox/models/yolo_head.py`` and mmdetection's ``SimOTAAssigner``
(docs/methods.md, "SimOTA and dynamic soft labels").

Rule: a prior is a candidate of a GT when its centre lies inside the box or within 2.5 strides of
the box centre; cost = BCE(predicted class probability, one-hot of the GT class) summed over the
classes + 3 x (-log IoU of the predicted box) + 1e5 unless the centre is inside both the box and
the centre square. Each GT takes its k lowest-cost candidates, k = max(1, int(sum of its 10
largest candidate IoUs)); a prior taken by several GTs keeps the one of lowest cost; positives
train towards the IoU of their predicted box (:mod:`.dynamic_k`).

Differences from the official code:

- Candidates are per GT: a GT's pairs are the priors inside *its* box or centre square. YOLOX
  scores every GT against the union of all GTs' regions, so a GT could also take a prior that lies
  only in another GT's region (always at the 1e5 penalty, chosen only when fewer than k priors
  of its own region have a lower cost), and its k sums its 10 largest IoUs over that union.
  Per-GT candidates are what keeps the work and memory proportional to the candidate pairs.
- The classification probability: YOLOX's head has an objectness branch and uses
  sqrt(sigmoid(cls) x sigmoid(obj)); ``objectness=True`` does that with the head's quality branch.
  This project's SimOTA configs have no objectness (their quality focal loss trains the class score
  towards the IoU, as a joint score) and use sigmoid(cls) alone (``objectness=False``).
- The class terms are float32 as in YOLOX, the cost summed in float64 (YOLOX: float32, where
  1e5 + a cost keeps about 2 decimals), and ties are broken deterministically (lowest prior index
  within a GT, lowest GT index at a prior).
"""

import torch
from torch import Tensor

from ..box_ops import box_centers, inside, take_rows
from ..registry import ASSIGNER_REGISTRY
from ..structures import DensePredictions, Priors
from .candidates import PriorGrid, Windows
from .dynamic_k import DynamicKAssigner, PriorClassSums, pair_logits

#: Half-side of the centre square in strides (YOLOX ``center_radius = 2.5``; mmdetection's default).
CENTER_RADIUS = 2.5
#: IoUs summed into a GT's dynamic k (YOLOX ``n_candidate_k = 10``, mmdetection ``candidate_topk``).
CANDIDATE_TOPK = 10
#: Weight of the -log IoU cost (YOLOX: ``3.0 * pair_wise_ious_loss``).
IOU_WEIGHT = 3.0
#: Weight of the classification cost (YOLOX 1; mmdetection ``cls_weight = 1.0``).
CLS_WEIGHT = 1.0
#: Extra cost of a candidate outside the box or outside the centre square (YOLOX ``100000.0``).
OUTSIDE_COST = 1e5
#: IoU floor inside -log (YOLOX ``-torch.log(pair_wise_ious + 1e-8)``).
IOU_EPS = 1e-8
#: torch's binary cross-entropy bounds log(p) and log(1 - p) below by -100.
LOG_FLOOR = -100.0


@ASSIGNER_REGISTRY.register()
class SimOTAAssigner(DynamicKAssigner):
    """YOLOX's SimOTA on per-GT candidate pairs (see module doc)."""

    def __init__(
        self,
        *,
        num_classes: int,
        center_radius: float = CENTER_RADIUS,
        candidate_topk: int = CANDIDATE_TOPK,
        iou_weight: float = IOU_WEIGHT,
        cls_weight: float = CLS_WEIGHT,
        objectness: bool = False,
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            center_radius: half-side of the centre square, in strides of the prior's level.
            candidate_topk: q, the largest candidate IoUs summed into a GT's k.
            iou_weight, cls_weight: weights of the -log IoU and classification costs.
            objectness: use sqrt(sigmoid(cls) x sigmoid(quality)) as the class probability (YOLOX,
                with the head's quality branch as objectness); False: sigmoid(cls).
            box2box_transform, chunk_pairs: see :class:`~.dynamic_k.DynamicKAssigner`.
        """
        super().__init__(
            num_classes=num_classes,
            topq=candidate_topk,
            box2box_transform=box2box_transform,
            **kwargs,
        )
        if not center_radius > 0 or not iou_weight >= 0 or not cls_weight >= 0:
            raise ValueError(
                "model.assigner needs center_radius > 0, iou_weight >= 0 and cls_weight >= 0, got "
                f"{center_radius}, {iou_weight}, {cls_weight}"
            )
        self.center_radius = float(center_radius)
        self.iou_weight = float(iou_weight)
        self.cls_weight = float(cls_weight)
        self.objectness = bool(objectness)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, center_radius={self.center_radius}, "
            f"candidate_topk={self.topq}, iou_weight={self.iou_weight}, "
            f"cls_weight={self.cls_weight}, objectness={self.objectness}"
        )

    # ------------------------------------------------------------------------- candidates
    def center_squares(self, gt_boxes: Tensor, strides: Tensor) -> Tensor:
        """(..., 4) the squares of half-side ``center_radius x stride`` around the GT centres."""
        centers = box_centers(gt_boxes)
        radius = (self.center_radius * strides)[..., None]
        return torch.cat([centers - radius, centers + radius], dim=-1)

    def candidate_windows(self, grid: PriorGrid, gt_boxes: Tensor) -> Windows:
        """Per GT and level, the smallest rectangle holding the box and the centre square."""
        boxes = gt_boxes.double()[:, None]  # (M, 1, 4)
        squares = self.center_squares(boxes, grid.strides_t[None, :])  # (M, L, 4)
        lo = torch.minimum(boxes[..., :2], squares[..., :2])
        hi = torch.maximum(boxes[..., 2:], squares[..., 2:])
        return grid.windows(lo, hi)

    def candidates(self, priors: Priors, gt_boxes: Tensor, gt_idx: Tensor, prior_idx: Tensor):
        """Pairs whose prior centre is strictly inside the box or the centre square; ``in_both``:
        inside both."""
        points = take_rows(priors.center_columns(), prior_idx)
        boxes = take_rows(gt_boxes.t().contiguous(), gt_idx)
        in_box = inside(points, boxes)
        squares = self.center_squares(boxes, priors.strides.index_select(0, prior_idx))
        in_center = inside(points, squares)
        return in_box | in_center, {"in_both": in_box & in_center}

    # ------------------------------------------------------------------------- cost
    def probabilities(self, logits: Tensor, quality) -> Tensor:
        """Class probabilities (float32, as YOLOX) of rows of logits: sigmoid(cls), or with
        objectness sqrt(sigmoid(cls) x sigmoid(obj))."""
        prob = logits.float().sigmoid()
        if self.objectness:
            prob = torch.sqrt(prob * quality.float().sigmoid())
        return prob

    def prior_terms(self, predictions: DensePredictions):
        logits = predictions.logits.detach()
        quality = None
        if self.objectness:
            if predictions.quality is None:
                raise ValueError(
                    "model.assigner.objectness=True needs the head's quality branch as objectness "
                    "(model.head.quality='objectness')"
                )
            quality = predictions.quality.detach()[:, :1]
        terms = {"logits": logits, "quality": quality}
        # every class's BCE against 0; the objectness of a row goes with its logits
        rows = logits if quality is None else torch.cat([logits, quality], dim=1)
        terms["neg_sum"] = PriorClassSums(rows, lambda x: _bce(self._row_probabilities(x), 0.0))
        return terms

    def _row_probabilities(self, rows: Tensor) -> Tensor:
        if self.objectness:
            return self.probabilities(rows[:, :-1], rows[:, -1:])
        return self.probabilities(rows, None)

    def pair_cost(self, priors, terms, gt_boxes, gt_classes, gt_idx, prior_idx, iou, extra):
        """BCE(p, one-hot) summed over classes: every class's term against 0 with the GT class's
        swapped for its term against 1; + iou_weight x -log(IoU + eps); + the penalty outside the
        box or the centre square."""
        cls = gt_classes.index_select(0, gt_idx)
        x = pair_logits(terms["logits"], prior_idx, cls)
        q = None if terms["quality"] is None else terms["quality"][:, 0].index_select(0, prior_idx)
        prob = self.probabilities(x, q)
        cls_cost = (
            terms["neg_sum"].take(prior_idx) - _bce(prob, 0.0).double() + _bce(prob, 1.0).double()
        )
        iou_cost = -torch.log(iou.double() + IOU_EPS)
        outside = (~extra["in_both"]).double() * OUTSIDE_COST
        return self.cls_weight * cls_cost + self.iou_weight * iou_cost + outside


def _bce(prob: Tensor, target: float) -> Tensor:
    """Elementwise binary cross-entropy of probabilities against a constant 0 or 1, with each
    log bounded below by -100 as in torch's ``binary_cross_entropy`` (written out: torch's is
    several times slower on the CPU)."""
    log = torch.log(prob) if target == 1.0 else torch.log1p(-prob)
    return -log.clamp(min=LOG_FLOOR)

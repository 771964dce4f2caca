"""AutoAssign's bag losses, on the weights that :class:`dense_assign.assigners.AutoAssign` returns.

Paper: "AutoAssign: Differentiable Label Assignment for Dense Object Detection" (Zhu et al., 2020),
Eq. 1 and 12; normalizers and loss weights from the official code (docs/methods.md, "AutoAssign").

Rule: each GT is one positive bag, -log(sum_j w+_j P+_j) over its candidates; every point and class
is a negative, P-^2 BCE(P-, 0) with P- = P(cls) P(obj) (1 - F), F the foreground probability the
assigner wrote on the candidates' class channels.

Differences from the paper:

- Normalizers and weights come from the official code: the positive loss is summed over GTs and
  divided by max(1, #GT) (all-reduced mean over processes) x 0.25; the negative loss by
  max(1, sum of the center prior over all candidates) (all-reduced mean) x 0.75; plus the term
  ``#GT / sum G`` per image, averaged over images, x 0.75 (not in Eq. 12). With
  ``center_prior="fixed"`` or ``"none"`` this term is a constant.
- The focal modulation of the negatives is P-^gamma (gamma 2) without alpha, as the official code;
  the paper's alpha = 0.25 shows up as the 0.25 / 0.75 weights of the positive / negative terms.
- The bag probability is clamped to at most 1 (it exceeds 1 only by rounding) and BCE's log is
  clamped at -100 (``F.binary_cross_entropy``, as the official code), so an empty-looking bag costs
  at most 100.

An image without GT has no bag (zero positive and center terms) and a plain negative loss; the empty
pair tensors from the assigner still carry mu, sigma, the objectness and the box outputs in the
graph, and ``0 x`` sums of the head outputs are added besides, so DDP sees every parameter used.

Logged (detectron2 EventStorage): ``autoassign/bag_prob`` (mean positive bag probability),
``autoassign/max_pos_weight`` (mean over GTs of the largest w+), ``autoassign/pairs_per_gt``,
``autoassign/center_prior_sum`` (the negative normalizer), ``autoassign/gt_fallback``.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..deferred import put_scalar
from ..structures import AssignResult, DensePredictions, Priors
from .functional import reduce_mean, to_float32

#: Loss weights of the positive / negative / center-prior terms (official code; mmdet
#: pos_loss_weight, neg_loss_weight, center_loss_weight; focal alpha 0.25 of Sec. 4.1).
POS_LOSS_WEIGHT, NEG_LOSS_WEIGHT, CENTER_LOSS_WEIGHT = 0.25, 0.75, 0.75
#: Focal gamma of the negative loss (Sec. 4.1: Focal Loss with gamma = 2.0).
NEG_GAMMA = 2.0
#: Clamp of denominators (official code, EPS = 1e-12).
EPS = 1e-12


class AutoAssignLoss(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        objectness: str = "implicit",
        pos_loss_weight: float = POS_LOSS_WEIGHT,
        neg_loss_weight: float = NEG_LOSS_WEIGHT,
        center_loss_weight: float = CENTER_LOSS_WEIGHT,
        neg_gamma: float = NEG_GAMMA,
    ):
        """
        Args:
            objectness: "implicit" (P(cls) x P(obj) in the negatives, Eq. 3) or "none" (Table 4
                "no-obj"); must match the assigner's (the config interpolates it).
            pos_loss_weight, neg_loss_weight, center_loss_weight: weights of the three terms.
            neg_gamma: exponent of P- in the negative loss.
        """
        super().__init__()
        if objectness not in ("implicit", "none"):
            raise ValueError(f"model.loss.objectness={objectness!r}; allowed: implicit, none")
        for key, value in (
            ("pos_loss_weight", pos_loss_weight),
            ("neg_loss_weight", neg_loss_weight),
            ("center_loss_weight", center_loss_weight),
            ("neg_gamma", neg_gamma),
        ):
            if not value >= 0:
                raise ValueError(f"model.loss.{key} must be >= 0, got {value}")
        self.num_classes = num_classes
        self.objectness = objectness
        self.pos_loss_weight = float(pos_loss_weight)
        self.neg_loss_weight = float(neg_loss_weight)
        self.center_loss_weight = float(center_loss_weight)
        self.neg_gamma = float(neg_gamma)

    def forward(
        self,
        *,
        priors: Priors,
        predictions: DensePredictions,
        assignments: List[AssignResult],
        box2box_transform=None,
    ):
        logits = predictions.logits  # (N, R, K)
        if any(a.pairwise is None or "w_plus" not in a.pairwise for a in assignments):
            raise ValueError(
                "AutoAssignLoss needs the pair weights of the AutoAssign assigner "
                "(model.assigner=AutoAssign)"
            )
        if self.objectness == "implicit" and predictions.quality is None:
            raise ValueError(
                "model.loss.objectness='implicit' needs the head's objectness branch "
                "(model.head.quality='objectness')"
            )
        # The bag losses run in float32 outside autocast (binary_cross_entropy refuses fp16).
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._losses(predictions, assignments)

    def _losses(self, predictions: DensePredictions, assignments: List[AssignResult]):
        logits = to_float32(predictions.logits)
        num_images = len(assignments)
        pos_sum = logits.new_zeros(())
        center_terms, neg_idx, bag_probs, max_weights = [], [], [], []
        num_gt, num_pairs, prior_sum, fallback = 0, 0, logits.new_zeros(()), 0.0
        for i, a in enumerate(assignments):
            pw = a.pairwise
            gt_idx = pw["gt_idx"]
            m = a.num_gt
            # positive bag of each GT: -log(sum_j w+ P+) (Eq. 1 / 12), clamped as BCE(., 1)
            bag = logits.new_zeros(m).index_add(
                0, gt_idx, to_float32(pw["w_plus"] * pw["pos_conf"])
            )
            bag = bag.clamp(max=1.0)
            pos_sum = pos_sum + F.binary_cross_entropy(bag, torch.ones_like(bag), reduction="sum")
            # center-prior term #GT / sum G (official code; 0 x sum G without GT)
            g_sum = to_float32(pw["center_prior"]).sum()
            center_terms.append(m / g_sum.clamp(min=EPS) if m > 0 else 0.0 * g_sum)
            # foreground probability entries, as (image, point, class) -> f
            img = torch.full_like(pw["neg_point"], i)
            neg_idx.append((img, pw["neg_point"], pw["neg_class"], to_float32(pw["neg_fg"])))
            num_gt += m
            num_pairs += len(gt_idx)
            prior_sum = prior_sum + g_sum.detach()
            fallback += a.stats.get("gt_fallback", 0.0)
            if m > 0:
                bag_probs.append(bag.detach())
                w = pw["w_plus"].detach()
                max_weights.append(w.new_zeros(m).scatter_reduce(0, gt_idx, w, reduce="amax"))

        # negatives: every point and class, P- = P(cls) P(obj) (1 - F) (Eq. 11-12)
        prob = logits.sigmoid()
        if self.objectness == "implicit":
            prob = prob * to_float32(predictions.quality).sigmoid()
        neg_weight = torch.ones_like(prob)
        img, pts, cls, fg = (torch.cat(t) for t in zip(*neg_idx))
        neg_weight[img, pts, cls] = 1.0 - fg
        p_neg = prob * neg_weight
        neg = p_neg.pow(self.neg_gamma) * F.binary_cross_entropy(
            p_neg, torch.zeros_like(p_neg), reduction="none"
        )

        pos_norm = reduce_mean(num_gt, logits.device).clamp(min=1.0).float()
        neg_norm = reduce_mean(prior_sum, logits.device).clamp(min=1.0).float()
        # keep every box output in the graph whatever the batch holds (DDP)
        touch = 0.0 * predictions.deltas.sum()
        if predictions.quality is not None:
            touch = touch + 0.0 * predictions.quality.sum()
        losses = {
            "loss_pos": self.pos_loss_weight * pos_sum / pos_norm + touch,
            "loss_neg": self.neg_loss_weight * neg.sum() / neg_norm,
            "loss_center": self.center_loss_weight * torch.stack(center_terms).mean(),
        }

        if num_gt > 0:
            put_scalar("autoassign/bag_prob", torch.cat(bag_probs).mean())
            put_scalar("autoassign/max_pos_weight", torch.cat(max_weights).mean())
            put_scalar("autoassign/pairs_per_gt", num_pairs / num_gt)
        put_scalar("autoassign/center_prior_sum", prior_sum / num_images)
        put_scalar("autoassign/gt_fallback", fallback / num_images)
        return losses

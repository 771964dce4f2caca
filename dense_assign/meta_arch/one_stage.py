"""OneStageDetector: the one meta-architecture of every detector in this project.

backbone (ResNet-FPN, P3-P7) -> DenseHead -> priors -> assigner -> loss module; at inference a score
function, per-level top-k, box decoding, batched NMS. Everything method-specific lives in the parts
(assigner, head quality branch, loss, score function), never in this class.
"""

import logging
from collections import OrderedDict
from typing import Callable, List, Optional, Union

import torch
from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn

from .. import deferred
from ..assigners.base import BaseAssigner
from ..deferred import put_scalar
from ..evaluation.assignment_stats import assignment_statistics
from ..registry import ASSIGNER_REGISTRY, DENSE_HEAD_REGISTRY, build_from_registry
from ..structures import AssignResult, DensePredictions, Priors
from .scoring import ScoreFn, build_score_fn, describe_score_fn, needs_quality

logger = logging.getLogger(__name__)

#: Feature-map layouts whose priors a detector keeps between training steps (:meth:`priors_for`).
PRIOR_CACHE_SIZE = 8


class NonFinitePredictionError(FloatingPointError):
    """The head's box outputs became NaN or infinite during training (the model diverged)."""


def point_prior_generator(strides=(8, 16, 32, 64, 128), offset: float = 0.5, scale: float = 1.0):
    """Priors of a point (anchor-free) model: one box of ``scale * stride`` per location.

    The box centre is the point, at ``(k + offset) * stride``; the box size is what a
    ``Box2BoxTransformLinear(normalize_by_size=True)`` divides the (l, t, r, b) targets by.
    """
    return DefaultAnchorGenerator(
        sizes=[[scale * s] for s in strides],
        aspect_ratios=[1.0],
        strides=list(strides),
        offset=offset,
    )


@META_ARCH_REGISTRY.register()
class OneStageDetector(DenseDetector):
    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        prior_generator: DefaultAnchorGenerator,
        box2box_transform,
        assigner,
        loss: nn.Module,
        num_classes: int,
        test_score_fn: Union[str, ScoreFn] = "cls",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        test_box_voting: Optional[Callable[[Instances, Instances], Instances]] = None,
        pixel_mean,
        pixel_std,
        input_format: str = "BGR",
        vis_period: int = 0,
    ):
        """
        Args:
            prior_generator: detectron2 anchor generator; for point models
                :func:`point_prior_generator`.
            box2box_transform: decodes head deltas against the prior boxes.
            assigner: an assigner module, or the registered name of one (built with defaults).
            loss: the loss module (:class:`dense_assign.losses.DenseLoss` or a method's own).
            test_score_fn: a callable ``(cls, quality) -> (gate, score)`` or the name of one;
                see :mod:`dense_assign.meta_arch.scoring`.
            test_box_voting: None, or a callable ``(kept, candidates) -> Instances`` applied to
                each image's detections after NMS (:mod:`dense_assign.meta_arch.box_voting`).
        """
        if isinstance(head, str):  # a registered head by name, built for this backbone
            shapes = backbone.output_shape()
            names = head_in_features or sorted(shapes, key=lambda f: shapes[f].stride)
            head = build_from_registry(
                DENSE_HEAD_REGISTRY,
                head,
                "model.head",
                input_shape=[shapes[f] for f in names],
                num_classes=num_classes,
                num_anchors=prior_generator.num_cell_anchors[0],
            )
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_classes = num_classes
        self.prior_generator = prior_generator
        self.box2box_transform = box2box_transform
        self.assigner = build_from_registry(
            ASSIGNER_REGISTRY, assigner, "model.assigner", num_classes=num_classes
        )
        # assigners that decode predicted boxes do it as the model does, unless a config set them
        for module in self.assigner.modules():
            if isinstance(module, BaseAssigner) and module.box2box_transform is None:
                module.box2box_transform = box2box_transform
        self.loss = loss
        self.test_score_fn = build_score_fn(test_score_fn, "model.test_score_fn")
        # how messages name it: the name the config gave, else the callable's description
        self._score_fn_label = (
            repr(test_score_fn)
            if isinstance(test_score_fn, str)
            else describe_score_fn(self.test_score_fn)
        )
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        if test_box_voting is not None and not callable(test_box_voting):
            raise ValueError(
                f"model.test_box_voting={test_box_voting!r} is neither None nor a callable"
            )
        self.test_box_voting = test_box_voting
        self.input_format = input_format
        self.vis_period = vis_period
        self._prior_cache: "OrderedDict[tuple, Priors]" = OrderedDict()  # priors_for
        self._validate()

    def _validate(self):
        head_quality = getattr(self.head, "has_quality", False)
        if needs_quality(self.test_score_fn) and not head_quality:
            raise ValueError(
                f"model.test_score_fn={self._score_fn_label} needs a quality branch, but "
                "model.head.quality is 'none'; use test_score_fn='cls' or add a branch"
            )
        loss_quality = getattr(self.loss, "quality", "none")
        if loss_quality not in ("none", None) and not head_quality:
            raise ValueError(
                f"model.loss.quality={loss_quality!r} needs a quality branch in the head, but "
                "model.head.quality is 'none'"
            )
        for key in ("num_classes",):
            for part in ("head", "assigner", "loss"):
                value = getattr(getattr(self, part), key, self.num_classes)
                if value != self.num_classes:
                    raise ValueError(
                        f"model.{part}.{key}={value} differs from model.num_classes={self.num_classes}"
                    )
        head_a = getattr(self.head, "num_anchors", None)
        gen_a = self.prior_generator.num_cell_anchors[0]
        if head_a is not None and head_a != gen_a:
            raise ValueError(
                f"model.head.num_anchors={head_a} but model.prior_generator makes {gen_a} priors per "
                "location (len(sizes[0]) x len(aspect_ratios))"
            )
        if not 0.0 <= self.test_score_thresh < 1.0 or not 0.0 < self.test_nms_thresh <= 1.0:
            raise ValueError(
                f"model.test_score_thresh ({self.test_score_thresh}) must be in [0, 1) and "
                f"model.test_nms_thresh ({self.test_nms_thresh}) in (0, 1]"
            )
        for key in ("test_topk_candidates", "max_detections_per_image"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.num_classes < 1:
            raise ValueError(f"model.num_classes={self.num_classes} must be >= 1")

    # ------------------------------------------------------------------ priors
    def priors_for(self, features: List[Tensor]) -> Priors:
        """The priors of feature maps of these sizes on this device, kept between calls: a step
        whose padded batch has a size seen before reuses them, and with them the grid the
        assigners measured on them (``PriorGrid``), which depends only on the sizes. Multi-scale
        training has a few sizes; the ``PRIOR_CACHE_SIZE`` most recently used are kept."""
        key = (tuple(tuple(f.shape[-2:]) for f in features), str(features[0].device))
        cache = self._prior_cache
        priors = cache.get(key)
        if priors is None:
            priors = cache[key] = self.build_priors(features)
            while len(cache) > PRIOR_CACHE_SIZE:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return priors

    def build_priors(self, features: List[Tensor]) -> Priors:
        anchors: List[Boxes] = self.prior_generator(features)
        boxes = Boxes.cat(anchors).tensor
        sizes = [len(a) for a in anchors]
        strides = [int(s) for s in self.prior_generator.strides]
        device = boxes.device
        levels = torch.repeat_interleave(  # output_size: no GPU synchronization
            torch.arange(len(sizes), device=device),
            torch.tensor(sizes, device=device),
            output_size=sum(sizes),
        )
        return Priors(
            boxes=boxes,
            centers=(boxes[:, :2] + boxes[:, 2:]) / 2,
            strides=torch.tensor(strides, dtype=boxes.dtype, device=device)[levels],
            levels=levels,
            level_sizes=sizes,
            grid_sizes=[tuple(f.shape[-2:]) for f in features],
            level_strides=strides,
            num_anchors=self.prior_generator.num_cell_anchors[0],
            offset=float(self.prior_generator.offset),
        )

    def _transpose(self, predictions) -> List[List[Tensor]]:
        """Head outputs per level (N, A*C, H, W) -> (N, H*W*A, C): [logits, deltas(, quality)]."""
        logits, deltas, quality = predictions
        outputs, dims = [logits, deltas], [self.num_classes, 4]
        if quality:
            outputs.append(quality)
            dims.append(1)
        return self._transpose_dense_predictions(outputs, dims)

    def _flatten_predictions(self, features, predictions) -> DensePredictions:
        """The head's outputs for the assigner and the loss, in float32: under AMP the head
        computes in fp16, and box decoding, IoUs and the losses would then mix fp16 with the fp32
        priors and targets (fvcore's GIoU refuses the mix; detectron2's linear box decoding keeps
        fp16; exp and IoU lose precision). The features (SAPD's selection net) stay as they are."""
        flat = self._transpose(predictions)
        return DensePredictions(
            logits=cat(flat[0], dim=1).float(),
            deltas=cat(flat[1], dim=1).float(),
            quality=cat(flat[2], dim=1).float() if len(flat) > 2 else None,
            features=features,
        )

    # ------------------------------------------------------------------ training
    def assign(
        self, priors: Priors, preds: DensePredictions, gt_instances, image_sizes
    ) -> List[AssignResult]:
        aware = getattr(self.assigner, "prediction_aware", False)
        return [
            self.assigner(
                priors, gt, predictions=preds.image(i) if aware else None, image_size=size
            )
            for i, (gt, size) in enumerate(zip(gt_instances, image_sizes))
        ]

    def forward_training(self, images: ImageList, features, predictions, gt_instances):
        preds = self._flatten_predictions(features, predictions)
        self._check_finite_boxes(preds)
        priors = self.priors_for(features)
        assignments = self.assign(priors, preds, gt_instances, images.image_sizes)
        self._log_assignment_stats(priors, assignments, gt_instances)
        losses = self.loss(
            priors=priors,
            predictions=preds,
            assignments=assignments,
            box2box_transform=self.box2box_transform,
        )
        losses.update(self._assigner_losses(assignments))
        return losses

    @staticmethod
    def _check_finite_boxes(preds: DensePredictions) -> None:
        """Non-finite box outputs (a diverged model) would fail inside box decoding or a GIoU
        assertion of an assigner or loss; stop with a message instead. (Non-finite class or
        quality outputs give NaN losses, which the trainer reports by name.) On a GPU inside a
        training step the flag is read with the losses (:mod:`dense_assign.deferred`): the error
        comes before the optimizer step, or in place of the assigner's or loss's own failure."""
        try:
            where = f" at iteration {get_event_storage().iter}"
        except AssertionError:  # no EventStorage: not in a training loop
            where = ""
        deltas = preds.deltas

        def error():
            num_bad = int((~torch.isfinite(deltas)).sum())
            return NonFinitePredictionError(
                f"Non-finite box outputs of the head{where} ({num_bad} of {deltas.numel()} "
                "values): training diverged before the box losses (loss_box_reg) could be "
                "computed. Consider a lower learning rate, a longer warmup or "
                "train.clip_grad.enabled=True."
            )

        deferred.check(torch.isfinite(deltas.detach()).all(), error)

    @staticmethod
    def _assigner_losses(assignments: List[AssignResult]):
        """Loss terms of learnable assigners (``AssignResult.losses``), averaged over images."""
        names = sorted({k for a in assignments if a.losses for k in a.losses})
        merged = {}
        for name in names:
            terms = [a.losses[name] for a in assignments if a.losses and name in a.losses]
            merged[name] = torch.stack(terms).sum() / len(assignments)
        return merged

    def _log_assignment_stats(self, priors, assignments: List[AssignResult], gt_instances):
        """``assign/*``: the batch's :func:`assignment_statistics`; ``assigner/*``: the
        assigner's own numbers (``AssignResult.stats``, e.g. ATSS's IoU threshold, SAPD's level
        weight), each the mean over the images that report it."""
        stats = assignment_statistics(priors, assignments, gt_instances, self.num_classes)
        for name, value in stats.items():
            put_scalar(f"assign/{name}", value)
        for name in sorted({k for a in assignments for k in a.stats}):
            values = [a.stats[name] for a in assignments if name in a.stats]  # numbers or 0-dim
            put_scalar(f"assigner/{name}", sum(values) / len(values))

    def check_gt_instances(self, batched_inputs) -> None:
        """Refuse ground truth that would fail (or silently corrupt the targets) inside an
        assigner or a loss: non-finite boxes, class ids outside [0, num_classes). The message
        names the image. (The data path of ``train_net.py`` drops bad boxes before; this guards
        custom mappers and direct calls.)"""
        for x in batched_inputs:
            inst = x.get("instances", None)
            if inst is None or len(inst) == 0:
                continue
            boxes, classes = inst.gt_boxes.tensor, inst.gt_classes
            name = x.get("file_name", None) or f"image_id={x.get('image_id', '?')}"

            def non_finite(boxes=boxes, name=name):
                bad = (~torch.isfinite(boxes)).any(dim=1).nonzero()[:, 0].tolist()
                return ValueError(f"Ground truth of {name}: non-finite boxes at indices {bad[:10]}")

            def bad_class(classes=classes, name=name):
                outside = (classes < 0) | (classes >= self.num_classes)
                return ValueError(
                    f"Ground truth of {name}: class ids {sorted(set(classes[outside].tolist()))} "
                    f"outside [0, {self.num_classes}) (model.num_classes={self.num_classes})"
                )

            # CPU tensors (a data loader's) are checked at once; CUDA ones with the losses
            deferred.check(torch.isfinite(boxes).all(), non_finite)
            deferred.check(((classes >= 0) & (classes < self.num_classes)).all(), bad_class)

    # ------------------------------------------------------------------ inference
    def forward(self, batched_inputs):
        if self.training:
            self.check_gt_instances(batched_inputs)
        return super().forward(batched_inputs)

    def forward_inference(self, images: ImageList, features, predictions):
        flat = self._transpose(predictions)
        quality = None
        if len(flat) > 2:  # per image, as the class probabilities (CPU rounding follows slicing)
            quality = [torch.stack([q.sigmoid() for q in level]) for level in flat[2]]
        anchors = self.prior_generator(features)
        return self.decode_detections(anchors, flat[0], flat[1], quality, images.image_sizes)

    def decode_detections(
        self,
        anchors: List[Boxes],
        logits: List[Tensor],
        deltas: List[Tensor],
        quality: Optional[List[Tensor]],
        image_sizes,
    ) -> List[Instances]:
        """The detections of each image: per level, the score function of the class
        probabilities and the quality, the score threshold, the top-k candidates and their
        decoded boxes; then NMS over the levels.

        Args:
            anchors: the priors of each level.
            logits, deltas: per level, (N, R_l, K) class logits and (N, R_l, 4) box deltas.
            quality: per level, (N, R_l, 1) quality probabilities (what the score function
                receives); None when the head has no quality branch.
        """
        results = []
        for i, image_size in enumerate(image_sizes):
            per_level = [
                self._decode_level(
                    anchors[lvl].tensor,
                    logits[lvl][i],
                    deltas[lvl][i],
                    None if quality is None else quality[lvl][i],
                    image_size,
                )
                for lvl in range(len(anchors))
            ]
            results.append(self._nms(Instances.cat(per_level)))
        return results

    def _decode_level(self, anchors: Tensor, logits: Tensor, deltas: Tensor, q, image_size):
        cls = logits.sigmoid()
        gate, score = self.test_score_fn(cls, q)
        keep = gate > self.test_score_thresh
        cand_scores = score[keep]
        cand = keep.nonzero()  # (P, 2): prior, class
        num = min(self.test_topk_candidates, cand_scores.numel())
        cand_scores, order = cand_scores.topk(num)
        prior_idx, class_idx = cand[order].unbind(dim=1)
        boxes = self.box2box_transform.apply_deltas(deltas[prior_idx], anchors[prior_idx])
        return Instances(
            image_size, pred_boxes=Boxes(boxes), scores=cand_scores, pred_classes=class_idx
        )

    def _nms(self, pred: Instances) -> Instances:
        keep = batched_nms(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        kept = pred[keep[: self.max_detections_per_image]]
        if self.test_box_voting is not None:
            kept = self.test_box_voting(kept, pred)
        return kept

"""SAPD: soft-weighted anchor points on soft-selected pyramid levels.

Paper: "Soft Anchor-Point Object Detection" (Zhu, Chen, Shen, Savvides, ECCV 2020), Sec. 3.1-3.4,
Eq. 1-6, Tables 1-4; FSAF ("Feature Selective Anchor-Free Module", Zhu et al., CVPR 2019) for the
online feature selection it builds on (docs/methods.md, "SAPD").

Rule: a point (k + 0.5) * stride inside the GT box shrunk to eps = 0.2 around its centre is a
positive of that GT on every level, weighted by f = [min(l,r) min(t,b) / (max(l,r) max(t,b))]^eta
(Eq. 4) times the GT's weight for the point's level (Eq. 5): one-hot on its minimal-loss level for
the first half of training, then the feature selection net's probabilities on the top-3 levels.

What the assigner returns (one image): ``labels`` (class of the positives, K for negatives, -1 for
points of a GT's region on a level whose level weight is 0), ``matched_idxs`` / ``matched_gt_boxes``
(the GT of every region point, ignored ones included), ``loss_weights`` (w of Eq. 5 for positives, 0
for ignored points, 1 for negatives; :class:`~dense_assign.losses.DenseLoss` multiplies the focal
and IoU losses by it and divides by the positives' sum, Eq. 6) and ``losses["loss_fsn"]``
(lambda x cross-entropy of the feature selection net, Eq. 6).

The pieces, each a method (tests call them directly):

- :meth:`SAPDAssigner.match`: per point, the GT it trains for among the (GT, point) pairs of the
  positive regions (shrunk box, plus the point nearest the centre on a level where no point falls in
  it): the minimum-area one;
- :meth:`SAPDAssigner.point_weights`: f of Eq. 4;
- :meth:`SAPDAssigner.instance_losses`: FSAF's per-(GT, level) loss from the detached predictions,
  whose argmin is the selection target;
- :meth:`SAPDAssigner.level_weights`: w_l^B of Eq. 5 in each phase;
- :class:`FeatureSelectionNet`: Table 1, on RoIAlign features of the GT box.

Schedule (Sec. 3.4, the shared :class:`~dense_assign.assigners.schedule.PhaseSchedule`): phase one
(one-hot min-loss level) while the trainer's iteration, read from detectron2's ``EventStorage``, is
below ``switch_iter = int(switch_fraction * max_iter)``; phase two
from then on. ``max_iter`` comes from ``train.max_iter`` through a config interpolation, so command
line overrides move the switch, and ``--resume`` lands in the right phase because the iteration
comes from the storage. Without an ``EventStorage`` (analysis tools, tests) or without ``max_iter``
the assigner is in phase two: the rule a finished training ends with.

Differences from the paper (choices it leaves open):

- Positive region: a point is inside B_v when |X - x| <= eps w / 2 and |Y - y| <= eps h / 2
  (inclusive). On a level where no point falls inside B_v, the point nearest the box centre is a
  positive (the Keras codes' "at least one cell on every level"; docs/methods.md, "SAPD") if the
  centre lies on the level's grid; such a fallback point is not in B_v, so it gets f = 1 (Eq. 4's
  "otherwise" branch), times its level weight.
- A point in the regions of several GTs trains for the one of minimum area (ties: lowest index),
  as FSAF / the Keras codes; the paper does not say.
- Instance loss of the selection (FSAF): for each GT and level, the mean over the GT's points on
  that level of (focal loss summed over classes + IoU loss), unweighted, from the detached
  predictions; a level without points gets +inf; ties go to the lower level. GTs without any
  point on any level are left out of the cross-entropy.
- Top-k levels (phase two): the k = 3 levels of minimal instance loss (Sec. 3.3: "topk feature
  levels with k minimal instance-dependent losses"), each weighted by the selection net's
  probability for it; the weights are detached and not renormalized. ``topk_by="fsn"`` picks the
  k most probable levels instead (gogo12235LYH's Keras code); ``renormalize_topk=True`` makes them
  sum to 1 per instance.
- Points of a GT's region on a level of weight 0 are ignored for every class (label -1); FSAF's
  code zeroes only the GT's own class there.
- The selection net gets gradients only from its own loss: its input features are detached
  (``fsn_feature_grad=True`` lets its loss reach the FPN) and so are its outputs used as weights.
  RoIAlign uses 2 x 2 samples per bin (Mask R-CNN's RoIAlign, the paper's [7]) and aligned
  (half-pixel) coordinates; biases start at 0 (the paper gives only the Gaussian weights). The
  cross-entropy is averaged over the GTs of an image, then over the images of the batch.
- Detection head (configs/common/models/sapd.py): "five 3x3 conv layers" per subnet (Sec. 3.1) is
  read as RetinaNet's / FSAF's four tower convs plus the 3x3 output conv; no normalization, no
  learnable Scale (the z * stride normalization already equalizes the levels' target ranges). The
  box output is decoded through a ReLU (detectron2's ``Box2BoxTransformLinear``, as the Keras
  codes' ReLU on the regression output).

All work is vectorized (a loop over pyramid levels only where each level has its own grid or
features). The positive regions come from per-GT windows of the point grid (the cells of B_v, plus
the nearest points; :mod:`~dense_assign.assigners.candidates`), reduced to the minimum-area GT per
point with scatter operations (the tests compare it with dense (GT, R) masks). Everything after it works on the (at most R)
matched points and on (M, L) tables; the feature selection net's RoIAlign of every GT on every
level dominates the time and memory of a crowded image.
"""

import logging
import math
from contextlib import nullcontext
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..box_ops import box_centers, centerness, ltrb
from ..deferred import put_scalar
from ..losses.functional import iou_loss
from ..registry import ASSIGNER_REGISTRY
from ..structures import AssignResult, Priors, positives_per_gt
from .base import BaseAssigner
from .candidates import BestPerPrior
from .schedule import PhaseSchedule

logger = logging.getLogger(__name__)

#: eps, the shrunk factor of the valid box B_v (Sec. 3.1; value from FSAF, Sec. 3.4).
SHRINK_FACTOR = 0.2
#: eta, steepness of the soft point weight f (Eq. 4); 1.0 is best in Table 3.
ETA = 1.0
#: k, the number of soft-selected levels per instance in phase two (Sec. 3.3, Table 4).
TOP_K = 3
#: lambda, weight of the selection net's cross-entropy in the total loss (Eq. 6, Sec. 3.4).
FSN_LOSS_WEIGHT = 0.1
#: fraction of training in phase one, hard min-loss level (Sec. 3.4: first 6 of 12 epochs).
SWITCH_FRACTION = 0.5
#: channels of the selection net's conv layers (Table 1).
FSN_CONV_DIM = 256
#: RoIAlign output size of the selection net's input, 1280 x 7 x 7 for P3-P7 (Table 1).
FSN_POOLER_RESOLUTION = 7
#: samples per RoIAlign bin and axis: Mask R-CNN's RoIAlign ([7] of the paper), not in the paper.
FSN_SAMPLING_RATIO = 2
#: Above this many bytes of RoIAlign output (all levels of one image), the selection net's
#: autograd graph does not keep it but pools again in the backward pass
#: (:meth:`FeatureSelectionNet.forward`): 64 MiB, M of about 260 GTs at 256 channels.
FSN_KEEP_POOLED_BYTES = 64 << 20
#: std of the Gaussian initialization of the selection net (Sec. 3.4).
FSN_INIT_STD = 0.01
#: focal loss of the instance loss (Sec. 3.1, focal loss [15] with RetinaNet's alpha / gamma).
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0

TOPK_BY = ("loss", "fsn")


class FeatureSelectionNet(nn.Module):
    """The feature selection network of Table 1: RoIAlign of the GT box on every level,
    concatenated, three 3x3 convs without padding (ReLU), a fully connected layer to one logit per
    level (softmax is applied by the caller)."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_levels: int,
        conv_dim: int = FSN_CONV_DIM,
        pooler_resolution: int = FSN_POOLER_RESOLUTION,
        sampling_ratio: int = FSN_SAMPLING_RATIO,
        init_std: float = FSN_INIT_STD,
    ):
        """
        Args:
            in_channels: channels of one pyramid level's features (the FPN's out_channels).
            num_levels: pyramid levels L (5 for P3-P7); the input has L x in_channels channels.
            conv_dim: channels of the three convs (Table 1: 256).
            pooler_resolution: RoIAlign output size (Table 1: 7, so three valid 3x3 convs end at
                1 x 1); at least 7.
            sampling_ratio: RoIAlign samples per bin and axis (0: adaptive).
            init_std: std of the Gaussian weights (Sec. 3.4); biases start at 0.
        """
        super().__init__()
        if in_channels <= 0 or num_levels <= 0 or conv_dim <= 0:
            raise ValueError(
                f"FeatureSelectionNet needs in_channels, num_levels, conv_dim > 0, got "
                f"{in_channels}, {num_levels}, {conv_dim}"
            )
        if pooler_resolution < 7:
            raise ValueError(f"fsn_pooler_resolution must be >= 7, got {pooler_resolution}")
        self.in_channels = int(in_channels)
        self.num_levels = int(num_levels)
        self.pooler_resolution = int(pooler_resolution)
        self.sampling_ratio = int(sampling_ratio)
        layers: List[nn.Module] = []
        c_in = self.in_channels * self.num_levels
        for _ in range(3):  # three 3x3 convs, no padding, ReLU (Table 1)
            layers += [nn.Conv2d(c_in, conv_dim, kernel_size=3, padding=0), nn.ReLU()]
            c_in = conv_dim
        self.convs = nn.Sequential(*layers)
        out = self.pooler_resolution - 6
        self.fc = nn.Linear(conv_dim * out * out, self.num_levels)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, std=init_std)
                nn.init.constant_(m.bias, 0.0)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_levels={self.num_levels}, "
            f"pooler_resolution={self.pooler_resolution}, sampling_ratio={self.sampling_ratio}"
        )

    def _rois(self, features: Sequence[Tensor], boxes: Tensor) -> Tensor:
        if len(features) != self.num_levels:
            raise ValueError(
                f"FeatureSelectionNet built for {self.num_levels} levels got {len(features)}"
            )
        return torch.cat([boxes.new_zeros((len(boxes), 1)), boxes], dim=1)

    def _pool_level(self, feature: Tensor, rois: Tensor, stride: int) -> Tensor:
        """(M, C, S, S) RoIAlign features of one level."""
        return roi_align(
            feature,
            rois.to(feature.dtype),
            output_size=self.pooler_resolution,
            spatial_scale=1.0 / stride,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )

    def pool(self, features: Sequence[Tensor], boxes: Tensor, strides: Sequence[int]) -> Tensor:
        """(M, L x C, S, S) RoIAlign features of the (M, 4) boxes on one image's levels: the
        input of Table 1 (:meth:`forward` never builds it, see there)."""
        rois = self._rois(features, boxes)
        return torch.cat([self._pool_level(f, rois, s) for f, s in zip(features, strides)], dim=1)

    def _pooled_again(self, feature: Tensor, rois: Tensor, stride: int, pooled: Tensor):
        """``saved_tensors_hooks`` under which a conv of ``pooled`` keeps, instead of ``pooled``,
        what pools it again: the backward pass runs the RoIAlign of the level once more (bit for
        bit the same values: the same kernel on the same inputs, in the dtype the conv saved).
        RoIAlign's output is the bulk of the net's activations (M x 256 x 7 x 7 floats per level,
        250 MB over five levels at M = 1000); the level's features are held by the detector
        anyway."""
        shape = pooled.shape

        def pack(saved: Tensor):
            if saved.shape != shape:  # the conv's weight
                return saved
            return saved.dtype

        def unpack(packed):
            if isinstance(packed, Tensor):
                return packed
            with torch.no_grad():
                # rois rounded to the features' dtype, the pooling in float32, the result in the
                # features' dtype: the forward's values, autocast or not (torchvision's autocast
                # pools half features so); half features outside autocast, which detectron2 does
                # not train with, would be pooled in float32 here, not in half
                again = self._pool_level(
                    feature.detach().float(), rois.to(feature.dtype).float(), stride
                )
            return again.to(feature.dtype).to(packed)

        return pack, unpack

    def forward(self, features: Sequence[Tensor], boxes: Tensor, strides: Sequence[int]) -> Tensor:
        """Level logits (M, L) for the GT boxes of one image (features (1, C, H, W) per level).

        The first conv of the (M, L x C, S, S) concatenation equals the sum over levels of the
        conv of each level's features with that level's C input channels of the kernel; it is
        computed so, level by level, and the concatenation (250 MB at M = 1000) is never built.
        Each level's RoIAlign output is freed before the next level is pooled. When the
        outputs of all levels together exceed ``FSN_KEEP_POOLED_BYTES`` (M above ~260 at
        256 channels), the convs keep the means of pooling them again instead
        (:meth:`_pooled_again`): the autograd graph then holds no RoIAlign output, and the
        backward pass runs the RoIAlign again (README, "SAPD's memory at M = 1000"). Below the
        bound the graph keeps them, as plain autograd would: same values either way, bit for
        bit."""
        first = self.convs[0]
        c = self.in_channels
        rois = self._rois(features, boxes)
        s = self.pooler_resolution
        size = len(boxes) * len(features) * c * s * s * features[0].element_size()
        again = size > FSN_KEEP_POOLED_BYTES
        out = None
        for i, (feature, stride) in enumerate(zip(features, strides)):
            pooled = self._pool_level(feature, rois, stride)
            hooks = self._pooled_again(feature, rois, stride, pooled) if again else None
            with torch.autograd.graph.saved_tensors_hooks(*hooks) if hooks else nullcontext():
                part = F.conv2d(pooled, first.weight[:, i * c : (i + 1) * c])
            out = part if out is None else out + part
            del pooled, part
        x = self.convs[1:](out + first.bias[None, :, None, None])
        return self.fc(x.flatten(1))


@ASSIGNER_REGISTRY.register()
class SAPDAssigner(BaseAssigner):
    """Shrunk-box positives on every level, soft point weights, soft level weights (module doc)."""

    prediction_aware = True

    def __init__(
        self,
        *,
        num_classes: int,
        shrink_factor: float = SHRINK_FACTOR,
        soft_point_weights: bool = True,
        eta: float = ETA,
        soft_levels: bool = True,
        topk: int = TOP_K,
        topk_by: str = "loss",
        renormalize_topk: bool = False,
        use_fsn: Optional[bool] = None,
        fsn_loss_weight: float = FSN_LOSS_WEIGHT,
        fsn_in_channels: Optional[int] = None,
        num_levels: Optional[int] = None,
        fsn_conv_dim: int = FSN_CONV_DIM,
        fsn_pooler_resolution: int = FSN_POOLER_RESOLUTION,
        fsn_sampling_ratio: int = FSN_SAMPLING_RATIO,
        fsn_feature_grad: bool = False,
        max_iter: Optional[int] = None,
        switch_fraction: float = SWITCH_FRACTION,
        focal_alpha: float = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
        box2box_transform=None,
        **kwargs,
    ):
        """
        Args:
            shrink_factor: eps of B_v (Sec. 3.1).
            soft_point_weights: weight positives by f (Eq. 4, Table 2 "SW"); False: f = 1.
            eta: exponent of f (Table 3).
            soft_levels: soft-selected pyramid levels after the switch (Sec. 3.3, Table 2 "SS");
                False: every GT trains on its minimal-loss level for the whole training (FSAF's
                online feature selection).
            topk: levels kept per GT in phase two (Table 4).
            topk_by: "loss" (the k levels of minimal instance loss, Sec. 3.3) or "fsn" (the k
                most probable levels of the selection net).
            renormalize_topk: divide the kept levels' probabilities by their sum, so that every
                instance's level weights sum to 1 in phase two as in phase one (not in the paper,
                which does not say; default False: the probabilities as they are, as gogo12235LYH's
                Keras code).
            use_fsn: build and train the feature selection net; default ``soft_levels``. With
                ``soft_levels=False`` and ``use_fsn=True`` it trains alongside but its weights are
                not used (the paper's multi-task control, Sec. 4.1: 37.1 AP).
            fsn_loss_weight: lambda of Eq. 6.
            fsn_in_channels: channels of one FPN level. With ``num_levels`` it builds the net
                here; if either is None the net is built at the first call from the features it
                gets (tests, analysis): parameters created then are not in an optimizer built
                before, so configs set both.
            num_levels: pyramid levels the net selects among (5 for P3-P7).
            fsn_conv_dim, fsn_pooler_resolution, fsn_sampling_ratio: see
                :class:`FeatureSelectionNet`.
            fsn_feature_grad: let the selection net's loss reach the FPN features (default: they
                are detached, so the net learns only from its own loss and changes no feature).
            max_iter: the training's number of iterations (configs interpolate
                ``train.max_iter``); None: always phase two.
            switch_fraction: phase two starts at ``int(switch_fraction * max_iter)`` (Sec. 3.4).
            focal_alpha, focal_gamma: focal loss of the instance loss (set them to the detection
                loss's; the configs interpolate ``model.loss``).
            box2box_transform, chunk_pairs: see :class:`BaseAssigner` (None: the detector's box
                decoding).
        """
        super().__init__(num_classes=num_classes, box2box_transform=box2box_transform, **kwargs)
        if not 0.0 < shrink_factor <= 1.0:
            raise ValueError(f"model.assigner.shrink_factor must be in (0, 1], got {shrink_factor}")
        if not eta >= 0 or not math.isfinite(eta):
            raise ValueError(f"model.assigner.eta must be a finite value >= 0, got {eta}")
        if int(topk) < 1:
            raise ValueError(f"model.assigner.topk must be >= 1, got {topk}")
        if topk_by not in TOPK_BY:
            raise ValueError(f"model.assigner.topk_by={topk_by!r}; allowed: {', '.join(TOPK_BY)}")
        if not fsn_loss_weight >= 0:
            raise ValueError(f"model.assigner.fsn_loss_weight must be >= 0, got {fsn_loss_weight}")
        if not 0.0 <= switch_fraction <= 1.0:
            raise ValueError(
                f"model.assigner.switch_fraction must be in [0, 1], got {switch_fraction}"
            )
        if max_iter is not None and int(max_iter) < 0:
            raise ValueError(f"model.assigner.max_iter must be >= 0 or None, got {max_iter}")
        use_fsn = soft_levels if use_fsn is None else bool(use_fsn)
        if soft_levels and not use_fsn:
            raise ValueError(
                "model.assigner.soft_levels=True needs the feature selection net (use_fsn=True)"
            )
        self.shrink_factor = float(shrink_factor)
        self.soft_point_weights = bool(soft_point_weights)
        self.eta = float(eta)
        self.soft_levels = bool(soft_levels)
        self.topk = int(topk)
        self.topk_by = topk_by
        self.renormalize_topk = bool(renormalize_topk)
        self.use_fsn = use_fsn
        self.fsn_loss_weight = float(fsn_loss_weight)
        self.fsn_feature_grad = bool(fsn_feature_grad)
        self.max_iter = None if max_iter is None else int(max_iter)
        self.switch_fraction = float(switch_fraction)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self._fsn_args = dict(
            conv_dim=int(fsn_conv_dim),
            pooler_resolution=int(fsn_pooler_resolution),
            sampling_ratio=int(fsn_sampling_ratio),
        )
        self.fsn: Optional[FeatureSelectionNet] = None
        if use_fsn and fsn_in_channels is not None and num_levels is not None:
            self.fsn = FeatureSelectionNet(
                in_channels=int(fsn_in_channels), num_levels=int(num_levels), **self._fsn_args
            )
        self.schedule = PhaseSchedule(
            self.max_iter,
            (self.switch_fraction,),
            name="SAPD level selection",
            describe=self._describe_phase,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, shrink_factor={self.shrink_factor}, "
            f"soft_point_weights={self.soft_point_weights}, eta={self.eta}, "
            f"soft_levels={self.soft_levels}, topk={self.topk}, topk_by={self.topk_by}, "
            f"renormalize_topk={self.renormalize_topk}, "
            f"fsn_loss_weight={self.fsn_loss_weight}, max_iter={self.max_iter}, "
            f"switch_iter={self.switch_iter}"
        )

    # ------------------------------------------------------------------------- schedule
    @property
    def switch_iter(self) -> Optional[int]:
        """First iteration of phase two (None: no schedule, always phase two)."""
        switches = self.schedule.switch_iters
        return None if switches is None else switches[0]

    def phase(self) -> int:
        """1: one-hot minimal-loss level; 2: top-k levels weighted by the selection net.

        From the shared :class:`~.schedule.PhaseSchedule` (Sec. 3.4): 2 when not training or
        without ``max_iter``; always 1 with ``soft_levels=False``.
        """
        return self.schedule() if self.soft_levels else 1

    def _describe_phase(self, phase: int) -> str:
        if phase == 1:
            return "one-hot minimal-loss level per instance (FSAF online feature selection)"
        return f"top-{self.topk} levels weighted by the feature selection net"

    # ------------------------------------------------------------------------- candidates
    def nearest_points(self, priors: Priors, centers: Tensor) -> Tuple[Tensor, Tensor]:
        """Per (GT, level): the index of the point nearest the (m, 2) ``centers`` and whether the
        centre lies on the level's grid, ((m, L) long, (m, L) bool). Needs one prior per
        location."""
        device, dtype = centers.device, centers.dtype
        strides = torch.tensor(priors.level_strides, dtype=dtype, device=device)  # (L,)
        hw = torch.tensor(priors.grid_sizes, dtype=torch.long, device=device).reshape(-1, 2)
        starts = torch.tensor(priors.level_starts, dtype=torch.long, device=device)
        # grid coordinate of the nearest point: (k + offset) * s closest to c
        g = torch.floor(centers[:, None, :] / strides[None, :, None] - priors.offset + 0.5)
        g = g.to(torch.long)  # (m, L, 2) as (x, y)
        w, h = hw[None, :, 1], hw[None, :, 0]
        extent = hw.flip(1).to(dtype) * strides[:, None]  # (L, 2) grid extent (W s, H s)
        valid = ((centers[:, None, :] >= 0) & (centers[:, None, :] <= extent[None])).all(dim=2)
        valid &= (w > 0) & (h > 0)
        ix = torch.minimum(g[..., 0].clamp(min=0), (w - 1).clamp(min=0))
        iy = torch.minimum(g[..., 1].clamp(min=0), (h - 1).clamp(min=0))
        return starts[None] + iy * w + ix, valid

    def in_valid_box(self, points: Tensor, boxes: Tensor) -> Tensor:
        """Whether (..., 2) points lie in B_v of the (..., 4) boxes (broadcast; inclusive)."""
        ctr = box_centers(boxes)
        half = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0) * (self.shrink_factor / 2)
        return ((points - ctr).abs() <= half).all(dim=-1)

    def match(self, priors: Priors, gt_boxes: Tensor) -> Tensor:
        """(R,) the GT each point trains for, -1 outside every region: the minimum-area GT among
        the point's candidates (ties: lowest index). The candidates of a GT are the points in B_v
        (its cells; every point without a grid) and, on a level with none of them, the point
        nearest the box centre."""
        area = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=0).prod(dim=1)
        L = priors.num_levels
        ctr = box_centers(gt_boxes)
        half = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=0) * (self.shrink_factor / 2)
        lo = (ctr.double() - half.double())[:, None].expand(-1, L, -1)
        hi = (ctr.double() + half.double())[:, None].expand(-1, L, -1)
        best = BestPerPrior(len(priors), gt_boxes.device, area.dtype)
        has = torch.zeros(len(gt_boxes) * L, dtype=torch.bool, device=gt_boxes.device)
        pairs = self.window_pairs(priors, len(gt_boxes), lambda grid: grid.windows(lo, hi))
        for g, p in pairs:
            inside = self.in_valid_box(
                priors.centers.index_select(0, p), gt_boxes.index_select(0, g)
            )
            keep = inside.nonzero().squeeze(1)
            g, p = g.index_select(0, keep), p.index_select(0, keep)
            has[g * L + priors.levels.index_select(0, p)] = True
            best.update(p, g, -area.index_select(0, g))
        # a level without a point in B_v: the point nearest the centre (if on the grid)
        nearest, valid = self.nearest_points(priors, ctr)
        gi, li = (valid & ~has.view(-1, L)).nonzero(as_tuple=True)
        best.update(nearest[gi, li], gi, -area[gi])
        return best.result()[1]

    # ------------------------------------------------------------------------- weights
    def point_weights(self, points: Tensor, boxes: Tensor) -> Tensor:
        """f (Eq. 4) of (P, 2) points for their (P, 4) GT boxes: the generalized centerness
        ``[min(l, r) min(t, b) / (max(l, r) max(t, b))]^eta`` inside B_v, 1 elsewhere (fallback
        points; Eq. 4's "otherwise"), 1 everywhere with ``soft_point_weights=False``."""
        if not self.soft_point_weights:
            return points.new_ones(len(points))
        f = centerness(ltrb(points, boxes), exponent=self.eta)
        return torch.where(self.in_valid_box(points, boxes), f, torch.ones_like(f))

    @torch.no_grad()
    def instance_losses(
        self, priors: Priors, gt_instances, points: Tensor, gt_idx: Tensor, predictions
    ) -> Tensor:
        """(M, L) FSAF instance loss: per GT and level, the mean over the GT's ``points`` on that
        level of focal loss (summed over classes) + IoU loss, from detached predictions; +inf on a
        level without points."""
        num_gt, num_levels = len(gt_instances), priors.num_levels
        logits = predictions.logits.detach().index_select(0, points).float()
        target = torch.zeros_like(logits)
        classes = gt_instances.gt_classes.index_select(0, gt_idx)
        target[torch.arange(len(points), device=logits.device), classes] = 1
        focal = sigmoid_focal_loss(
            logits, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
        ).sum(dim=1)
        pred = self.decode_boxes(
            predictions.deltas.detach().index_select(0, points).float(),
            priors.boxes.index_select(0, points),
        )
        gt_boxes = gt_instances.gt_boxes.tensor.index_select(0, gt_idx)
        box_loss = iou_loss(pred, gt_boxes)
        key = gt_idx * num_levels + priors.levels.index_select(0, points)
        sums = logits.new_zeros(num_gt * num_levels).index_add_(0, key, focal + box_loss)
        counts = logits.new_zeros(num_gt * num_levels).index_add_(0, key, torch.ones_like(focal))
        mean = sums / counts.clamp(min=1)
        return torch.where(counts > 0, mean, torch.full_like(mean, math.inf)).view(num_gt, -1)

    def level_weights(self, losses: Tensor, probs: Optional[Tensor], phase: int) -> Tensor:
        """(M, L) w_l^B (Eq. 5). Phase one: one-hot of the minimal-loss level; phase two: the
        selection net's (detached) probabilities on the top-k levels, 0 elsewhere (divided by
        their sum with ``renormalize_topk``)."""
        num_levels = losses.shape[1]
        if phase == 1:
            return F.one_hot(losses.argmin(dim=1), num_levels).to(losses.dtype)
        if probs is None:
            raise ValueError("phase two of SAPD needs the feature selection net's probabilities")
        k = min(self.topk, num_levels)
        if self.topk_by == "loss":
            order = torch.argsort(losses, dim=1, stable=True)
        else:
            order = torch.argsort(probs, dim=1, descending=True, stable=True)
        keep = torch.zeros_like(losses, dtype=torch.bool).scatter_(1, order[:, :k], True)
        weights = torch.where(keep, probs.detach().to(losses.dtype), torch.zeros_like(losses))
        if self.renormalize_topk:
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return weights

    # ------------------------------------------------------------------------- selection net
    def _fsn_for(self, features: Sequence[Tensor]) -> Optional[FeatureSelectionNet]:
        """The selection net, built from the features on the first call when not configured."""
        if not self.use_fsn:
            return None
        if self.fsn is None and features:
            logger.warning(
                "SAPDAssigner: building the feature selection net at the first call "
                f"({features[0].shape[1]} channels, {len(features)} levels); set "
                "model.assigner.fsn_in_channels and num_levels so that it exists when the "
                "optimizer is built"
            )
            ref = features[0]
            self.fsn = FeatureSelectionNet(
                in_channels=ref.shape[1], num_levels=len(features), **self._fsn_args
            ).to(device=ref.device, dtype=ref.dtype)
        return self.fsn

    def _zero_fsn_loss(self, device) -> Tensor:
        """A zero loss that still reaches every parameter of the selection net (DDP)."""
        if self.fsn is None:
            return torch.zeros((), device=device)
        return sum(p.sum() for p in self.fsn.parameters()) * 0.0

    # ------------------------------------------------------------------------- entry
    def forward(self, priors: Priors, gt_instances, predictions=None, image_size=None):
        if predictions is None:
            raise ValueError(
                "SAPDAssigner is prediction-aware: call it with the image's predictions"
            )
        phase = self.phase()
        put_scalar("sapd/phase", float(phase))
        if len(gt_instances) == 0 or len(priors) == 0:
            result = self.empty_result(priors, num_gt=len(gt_instances))
            result.loss_weights = priors.boxes.new_ones(len(priors))
            if self._fsn_for(predictions.features) is not None:
                result.losses = {"loss_fsn": self._zero_fsn_loss(priors.boxes.device)}
            return result
        return self.assign(priors, gt_instances, predictions=predictions, phase=phase)

    def assign(self, priors: Priors, gt_instances, predictions=None, image_size=None, phase=None):
        if priors.num_anchors != 1:
            raise ValueError(
                f"SAPDAssigner needs one point per location, the priors have {priors.num_anchors}"
            )
        phase = self.phase() if phase is None else phase
        gt_boxes = gt_instances.gt_boxes.tensor
        gt_classes = gt_instances.gt_classes
        num_points, num_levels = len(priors), priors.num_levels

        with torch.no_grad():
            matched = self.match(priors, gt_boxes)  # (R,)
            points = (matched >= 0).nonzero(as_tuple=True)[0]  # region points (P,)
            gt_idx = matched.index_select(0, points)
            f = self.point_weights(
                priors.centers.index_select(0, points), gt_boxes.index_select(0, gt_idx)
            )
            losses = self.instance_losses(priors, gt_instances, points, gt_idx, predictions)
            best = losses.min(dim=1)
            has_points = torch.isfinite(best.values)  # GTs with a point on some level

        result_losses = None
        probs = None
        fsn = self._fsn_for(predictions.features)
        if fsn is not None:
            if len(predictions.features) != num_levels:
                raise ValueError(
                    f"SAPDAssigner: {len(predictions.features)} feature levels for "
                    f"{num_levels} prior levels"
                )
            feats = [x if self.fsn_feature_grad else x.detach() for x in predictions.features]
            fsn_logits = fsn(feats, gt_boxes, priors.level_strides).float()  # (M, L)
            probs = fsn_logits.detach().softmax(dim=1)
            if has_points.any():
                ce = F.cross_entropy(fsn_logits[has_points], best.indices[has_points])
                loss_fsn = self.fsn_loss_weight * ce
            else:
                loss_fsn = self._zero_fsn_loss(gt_boxes.device)
            result_losses = {"loss_fsn": loss_fsn}

        with torch.no_grad():
            weights = self.level_weights(losses, probs, phase)  # (M, L)
            level_w = weights[gt_idx, priors.levels[points]]
            selected = level_w > 0
            labels = torch.full(
                (num_points,), self.num_classes, dtype=torch.long, device=gt_boxes.device
            )
            labels[points] = torch.where(selected, gt_classes[gt_idx], torch.full_like(gt_idx, -1))
            loss_weights = gt_boxes.new_ones(num_points)
            loss_weights[points] = level_w.to(loss_weights.dtype) * f
            matched_boxes = gt_boxes.new_zeros((num_points, 4))
            matched_boxes[points] = gt_boxes[gt_idx]
            num_pos = int(selected.sum())
            per_gt = positives_per_gt(
                matched, (labels >= 0) & (labels != self.num_classes), len(gt_boxes)
            )
            stats = {
                "num_gt": float(len(gt_boxes)),
                "num_pos": float(num_pos),
                "gt_without_pos": float(len(gt_boxes) - int((per_gt > 0).sum())),
                "sapd_phase": float(phase),
            }
            if num_pos:
                # mean w_l^B and f of the positives: how much of each positive's loss phase two
                # keeps (1 in phase one)
                stats["level_weight"] = level_w[selected].mean()
                stats["point_weight"] = f[selected].mean()
            if probs is not None and has_points.any():
                hit = probs.argmax(dim=1) == best.indices
                stats["fsn_accuracy"] = hit[has_points].float().mean()
        return AssignResult(
            labels=labels,
            matched_idxs=matched,
            matched_gt_boxes=matched_boxes,
            num_gt=len(gt_boxes),
            loss_weights=loss_weights,
            losses=result_losses,
            stats=stats,
        )

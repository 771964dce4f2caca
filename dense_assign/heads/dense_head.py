"""The one head of every detector here: classification and box towers, an optional quality branch.

Layout (as RetinaNet / FCOS heads): each tower is ``depth x (3x3 conv, norm, ReLU)``, shared over
pyramid levels; ``cls_score`` predicts K logits per prior, ``bbox_pred`` 4 box deltas per prior, and
the optional quality branch 1 logit per prior:

=============  ==========================================================  =================
quality        meaning                                                      default tower
=============  ==========================================================  =================
none           no branch
centerness     FCOS / ATSS centerness (FCOS "imprv": on the box tower)      box
iou            IoU-aware RetinaNet: IoU of the decoded box with its GT      box
objectness     AutoAssign implicit objectness                               box
=============  ==========================================================  =================

A learnable per-level ``Scale`` multiplies the box output (FCOS / ATSS). Module names
(``cls_subnet``, ``bbox_subnet``, ``cls_score``, ``bbox_pred``) match detectron2's
``RetinaNetHead`` so its weights load directly.
"""

import math
from typing import List, Sequence

import torch
from detectron2.layers import ShapeSpec, get_norm
from torch import nn

from ..registry import DENSE_HEAD_REGISTRY

QUALITY_BRANCHES = ("none", "centerness", "iou", "objectness")


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level; FCOS Sec. 3.2)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x):
        return x * self.scale


def _tower(in_channels: int, conv_dims: Sequence[int], norm: str) -> nn.Sequential:
    layers: List[nn.Module] = []
    for c_in, c_out in zip([in_channels] + list(conv_dims), conv_dims):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1))
        if norm:
            layers.append(get_norm(norm, c_out))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@DENSE_HEAD_REGISTRY.register()
class DenseHead(nn.Module):
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int = 1,
        conv_dims: Sequence[int] = (256, 256, 256, 256),
        norm: str = "GN",
        prior_prob: float = 0.01,
        quality: str = "none",
        quality_tower: str = "box",
        use_scale: bool = True,
        bbox_reg_bias: float = 0.0,
    ):
        """
        Args:
            input_shape: one ShapeSpec per pyramid level (all with the same channels).
            num_anchors: priors per location (A); every output has A groups of channels.
            conv_dims: channels of each tower conv; its length is the tower depth (>= 1).
            norm: "" (none), "GN", "BN", "SyncBN" (see detectron2's ``get_norm``); shared by levels.
            prior_prob: initial foreground probability of the classifier (focal loss, Sec. 4.1).
            quality: one of ``QUALITY_BRANCHES``.
            quality_tower: "box" or "cls": which tower feeds the quality branch.
            use_scale: a learnable Scale per level on the box output.
            bbox_reg_bias: initial bias of the box output (AutoAssign 4.0, SAPD 0.1).
        """
        super().__init__()
        if not input_shape:
            raise ValueError("model.head.input_shape must list one ShapeSpec per pyramid level")
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(
                f"model.head.input_shape: all levels need the same channels, got {channels}"
            )
        if len(conv_dims) < 1:
            raise ValueError("model.head.conv_dims must have at least one layer (tower depth >= 1)")
        if quality not in QUALITY_BRANCHES:
            raise ValueError(
                f"model.head.quality={quality!r}; allowed: {', '.join(QUALITY_BRANCHES)}"
            )
        if quality_tower not in ("box", "cls"):
            raise ValueError(f"model.head.quality_tower={quality_tower!r}; allowed: box, cls")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"model.head.prior_prob must be in (0, 1), got {prior_prob}")
        if num_classes <= 0 or num_anchors <= 0:
            raise ValueError(
                f"model.head.num_classes ({num_classes}) and num_anchors ({num_anchors}) must be > 0"
            )
        in_channels = channels.pop()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.quality = quality
        self.quality_tower = quality_tower
        self.num_levels = len(input_shape)

        self.cls_subnet = _tower(in_channels, conv_dims, norm)
        self.bbox_subnet = _tower(in_channels, conv_dims, norm)
        self.cls_score = nn.Conv2d(conv_dims[-1], num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(conv_dims[-1], num_anchors * 4, 3, padding=1)
        self.quality_pred = (
            nn.Conv2d(conv_dims[-1], num_anchors, 3, padding=1) if quality != "none" else None
        )
        self.scales = (
            nn.ModuleList([Scale(1.0) for _ in range(self.num_levels)]) if use_scale else None
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.bbox_pred.bias, float(bbox_reg_bias))

    @property
    def has_quality(self) -> bool:
        return self.quality_pred is not None

    def forward(self, features: List[torch.Tensor]):
        """Returns (logits, box deltas, quality) lists over levels; quality is [] without a branch."""
        if len(features) != self.num_levels:
            raise ValueError(f"DenseHead built for {self.num_levels} levels got {len(features)}")
        logits, deltas, quality = [], [], []
        for level, feature in enumerate(features):
            cls_feat = self.cls_subnet(feature)
            box_feat = self.bbox_subnet(feature)
            logits.append(self.cls_score(cls_feat))
            reg = self.bbox_pred(box_feat)
            if self.scales is not None:
                reg = self.scales[level](reg)
            deltas.append(reg)
            if self.quality_pred is not None:
                quality.append(
                    self.quality_pred(box_feat if self.quality_tower == "box" else cls_feat)
                )
        return logits, deltas, quality

# FCOS, official "imprv" recipe (docs/methods.md, "FCOS"; FCOS paper + arXiv 2006.09214):
# center sampling 1.5, GIoU weighted by the centerness target, centerness on the box tower,
# GN head with per-level Scale, targets (l, t, r, b) / stride, loss normalized by the
# all-reduced positive count, score sqrt(cls x ctr) after thresholding the raw class score at 0.05.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.box_regression import Box2BoxTransformLinear

from dense_assign.assigners import FCOSAssigner
from dense_assign.heads import DenseHead
from dense_assign.losses import DenseLoss
from dense_assign.meta_arch import OneStageDetector, point_prior_generator

model = L(OneStageDetector)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        # P6/P7 from P5 (FCOS imprv, Sec. 2.2 of arXiv 2006.09214)
        top_block=L(LastLevelP6P7)(
            in_channels=256, out_channels="${..out_channels}", in_feature="p5"
        ),
    ),
    head=L(DenseHead)(
        input_shape=[ShapeSpec(channels=256)] * 5,
        num_classes="${..num_classes}",
        num_anchors=1,
        conv_dims=[256, 256, 256, 256],  # 4 conv layers per tower (FCOS Sec. 3.1)
        norm="GN",  # GN in the head (FCOS imprv)
        prior_prob=0.01,
        quality="centerness",
        quality_tower="box",  # CENTERNESS_ON_REG=True (imprv)
        use_scale=True,  # learnable Scale per level (FCOS Sec. 3.2)
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    # one point per location at (k + 0.5) * stride, regressing (l, t, r, b) / stride
    prior_generator=L(point_prior_generator)(strides=[8, 16, 32, 64, 128], offset=0.5),
    box2box_transform=L(Box2BoxTransformLinear)(normalize_by_size=True),
    assigner=L(FCOSAssigner)(num_classes="${..num_classes}", center_sampling_radius=1.5),
    loss=L(DenseLoss)(
        num_classes="${..num_classes}",
        focal_alpha=0.25,
        focal_gamma=2.0,
        box_loss="giou",
        box_weighting="centerness",  # official FCOS: GIoU x ctr target / sum(ctr)
        quality="centerness",
        normalizer="num_pos",  # all-reduced #pos / #GPUs (official), not detectron2's EMA
    ),
    num_classes=80,
    test_score_fn="sqrt_cls_quality_gated",  # threshold raw cls, report sqrt(cls x ctr)
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)

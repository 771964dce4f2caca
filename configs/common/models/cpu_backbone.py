# The CPU variant of the backbone for the synthetic configs: ResNet-18 FPN trained from scratch, so
# with trainable BatchNorm (FrozenBN with random weights diverges: docs/methods.md, "Environment"),
# ImageNet pixel std, and thinner FPN / head channels.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from dense_assign.model_zoo import basic_resnet_stages


def use_resnet18_fpn(model, channels: int = 96, tower_depth: int = 2, width: int = 64):
    """ResNet-18 FPN from scratch with BatchNorm, FPN / head of ``channels``, ``tower_depth`` convs
    per head tower. ``width`` is res2's channel count (64: ResNet-18 itself; the converging
    benchmark's 16 builds the stages with ``model_zoo.basic_resnet_stages``)."""
    bottom_up = model.backbone.bottom_up
    if width == 64:
        bottom_up.stages.depth = 18
        bottom_up.stages.norm = "BN"
        bottom_up.stages.pop("stride_in_1x1", None)  # bottleneck-only argument
    else:
        bottom_up.stem.out_channels = width
        bottom_up.stages = L(basic_resnet_stages)(depth=18, width=width, norm="BN")
    bottom_up.stem.norm = "BN"
    bottom_up.freeze_at = 0
    model.backbone.norm = "BN"
    model.backbone.out_channels = channels
    from_res5 = model.backbone.top_block.get("in_feature", "res5") == "res5"
    model.backbone.top_block.in_channels = 8 * width if from_res5 else channels
    model.head.input_shape = [ShapeSpec(channels=channels)] * 5
    model.head.conv_dims = [channels] * tower_depth
    model.pixel_std = [57.375, 57.120, 58.395]  # normalized inputs for from-scratch training
    return model

"""Shared helpers for the tests: tiny models and hand-made inputs."""
import torch
from detectron2.config import LazyConfig
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, Instances

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def shrink_model(m, channels: int = 32, tower: int = 2, num_classes: int = 3):
    """Turn a R-50-FPN model config into a ResNet-18 FPN with BN and thin towers (CPU tests)."""
    m.backbone.bottom_up.stages.depth = 18
    m.backbone.bottom_up.stages.norm = "BN"
    m.backbone.bottom_up.stem.norm = "BN"
    if "stride_in_1x1" in m.backbone.bottom_up.stages:
        del m.backbone.bottom_up.stages.stride_in_1x1
    m.backbone.out_channels = channels
    from_res5 = m.backbone.top_block.get("in_feature", "res5") == "res5"
    m.backbone.top_block.in_channels = 512 if from_res5 else channels
    m.head.input_shape = [ShapeSpec(channels=channels)] * 5
    m.head.conv_dims = [channels] * tower
    m.num_classes = num_classes
    return m


def load_model_cfg(path: str):
    return LazyConfig.load(str(REPO / path)).model


def make_instances(boxes, classes, image_size=(128, 160)):
    inst = Instances(image_size)
    inst.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    return inst


def random_batch(num_images=2, image_size=(128, 160), num_boxes=4, num_classes=3, seed=0):
    """Images with random (non-integer) GT boxes, as DatasetMapper would produce."""
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    batch = []
    for _ in range(num_images):
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 6 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], dim=1)
        classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
        image = torch.rand(3, h, w, generator=g) * 255
        batch.append({"image": image, "instances": make_instances(boxes, classes, image_size)})
    return batch


def make_priors(image_size=(32, 32), strides=(8, 16), offset=0.5, scale=1.0, anchor_generator=None):
    """Priors of a point model (or of ``anchor_generator``) for an image of ``image_size``."""
    from dense_assign.meta_arch import OneStageDetector, point_prior_generator

    gen = anchor_generator or point_prior_generator(strides=strides, offset=offset, scale=scale)
    h, w = image_size
    feats = [torch.zeros(1, 1, -(-h // s), -(-w // s)) for s in gen.strides]

    class _Shim:  # build_priors only needs the generator
        prior_generator = gen

    return OneStageDetector.build_priors(_Shim(), feats)

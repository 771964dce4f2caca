"""The benchmark's random inputs: GT boxes of one image, a head's outputs for its priors, and
model batches. Seeded through a ``torch.Generator``, so a seed gives the same inputs to every case
(and to the tests and GPU checks that import these)."""

import math

import torch

from . import NUM_CLASSES


def random_gt(num: int, image_size, num_classes: int, generator, sides=(8.0, 400.0), device="cpu"):
    """``num`` random GT boxes inside ``image_size``: side log-uniform in ``sides``, aspect ratio
    log-uniform in [1/2, 2], centre uniform, clipped to the image; random classes."""
    from detectron2.structures import Boxes, Instances

    h, w = image_size
    lo, hi = math.log(sides[0]), math.log(sides[1])
    side = torch.exp(lo + torch.rand(num, generator=generator) * (hi - lo))
    aspect = torch.exp((torch.rand(num, generator=generator) * 2 - 1) * math.log(2.0))
    bw, bh = side * aspect.sqrt(), side / aspect.sqrt()
    cx = torch.rand(num, generator=generator) * w
    cy = torch.rand(num, generator=generator) * h
    boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    inst = Instances(tuple(image_size))
    inst.gt_boxes = Boxes(boxes.to(device))
    inst.gt_classes = torch.randint(0, num_classes, (num,), generator=generator).to(device)
    return inst


def random_predictions(priors, num_classes: int, channels: int, generator, device, grad: bool):
    """Head outputs of one image for ``priors`` (``DensePredictions``), as leaf tensors that
    require grad when ``grad`` (as a head's outputs do in training)."""
    from ...structures import DensePredictions

    num = len(priors)

    def leaf(*shape, scale=1.0, positive=False):
        x = (
            torch.rand(*shape, generator=generator) * scale
            if positive
            else torch.randn(*shape, generator=generator)
        )
        return x.to(device).requires_grad_(grad)

    feats = [
        torch.randn(1, channels, h, w, generator=generator).to(device) for h, w in priors.grid_sizes
    ]
    return DensePredictions(
        logits=leaf(num, num_classes),
        deltas=leaf(num, 4, scale=4.0, positive=True),
        quality=leaf(num, 1),
        features=feats,
    )


def random_batch(num_images: int, image_size, num_gt: int, generator, num_classes=NUM_CLASSES):
    """Model inputs: random images (0..255) with ``num_gt`` random GT boxes each."""
    h, w = image_size
    return [
        {
            "image": torch.rand(3, h, w, generator=generator) * 255,
            "instances": random_gt(num_gt, image_size, num_classes, generator),
            "height": h,
            "width": w,
        }
        for _ in range(num_images)
    ]

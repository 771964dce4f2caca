"""Shared helpers for the tests: tiny models, hand-made inputs, train_net.py subprocesses."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet
from detectron2.structures import Boxes, Instances

from dense_assign.model_zoo import basic_resnet_stages

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "train_net.py"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny_fcos.py"


def shrink_model(
    m,
    channels: int = 32,
    tower: int = 2,
    num_classes: Optional[int] = 3,
    width: Optional[int] = None,
    norm: Optional[str] = "BN",
):
    """Turn a ResNet FPN model config into a thin ResNet-18 FPN (CPU tests), in place.

    Any backbone of the shipped configs: R-50 / R-101 (``ResNet.make_default_stages``), X-101
    (``model_zoo.resnext_stages``) or R-18 of any width (``model_zoo.basic_resnet_stages``, the
    converging benchmark's). ``width=None`` gives ResNet-18 itself (``make_default_stages``,
    res2 of 64 channels); a ``width`` builds ``basic_resnet_stages`` of that res2 width.
    ``norm``: the backbone's normalization (``None`` keeps the config's, e.g. FrozenBN); the
    config's ``freeze_at`` is kept. Everything sized by the FPN follows ``channels``: the head's
    input shapes and towers (``tower`` convs each; GroupNorm needs a multiple of 32), P6's input
    (C5 or P5), and SAPD's feature selection net (``fsn_in_channels``, ``fsn_conv_dim``). The
    rest of the config (assigner, loss, head options, priors, scoring) is left as it is.
    ``num_classes=None`` keeps the config's."""
    bottom_up = m.backbone.bottom_up
    norm = norm or bottom_up.stages.get("norm") or bottom_up.stem.get("norm", "BN")
    if width is None:
        bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm=norm)
        width = 64
    else:
        bottom_up.stages = L(basic_resnet_stages)(depth=18, width=width, norm=norm)
    bottom_up.stem.out_channels = width
    bottom_up.stem.norm = norm
    m.backbone.out_channels = channels
    from_res5 = m.backbone.top_block.get("in_feature", "res5") == "res5"
    m.backbone.top_block.in_channels = 8 * width if from_res5 else channels
    m.head.input_shape = [ShapeSpec(channels=channels)] * len(m.head_in_features)
    m.head.conv_dims = [channels] * tower
    assigner = m.get("assigner")
    if assigner is not None and "fsn_in_channels" in assigner:  # SAPD's feature selection net
        assigner.fsn_in_channels = channels
        assigner.fsn_conv_dim = channels
    if num_classes is not None:
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


def random_instances(n, size, seed, min_wh=2.0, max_wh=120.0, num_classes=3):
    """``n`` random GT boxes (sides ``min_wh``..``max_wh``, clipped to the image) and classes in an
    image of ``size`` (H, W), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 10.0, h - 10.0])
    wh = min_wh + torch.rand(n, 2, generator=g) * (max_wh - min_wh)
    boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], dim=1)
    return make_instances(boxes, torch.randint(0, num_classes, (n,), generator=g), size)


def make_priors(image_size=(32, 32), strides=(8, 16), offset=0.5, scale=1.0, anchor_generator=None):
    """Priors of a point model (or of ``anchor_generator``) for an image of ``image_size``."""
    from dense_assign.meta_arch import OneStageDetector, point_prior_generator

    gen = anchor_generator or point_prior_generator(strides=strides, offset=offset, scale=scale)
    h, w = image_size
    feats = [torch.zeros(1, 1, -(-h // s), -(-w // s)) for s in gen.strides]

    class _Shim:  # build_priors only needs the generator
        prior_generator = gen

    return OneStageDetector.build_priors(_Shim(), feats)


# ------------------------------------------------------------------------------ train_net.py
def run_train_net(args, datasets_root, config=TINY_CONFIG, timeout=300, env=None):
    env = dict(
        os.environ,
        **{"OMP_NUM_THREADS": "1", "DETECTRON2_DATASETS": str(datasets_root), **(env or {})},
    )
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(config), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_ok(proc):
    assert proc.returncode == 0, (
        f"train_net.py failed (rc={proc.returncode})\n--- stdout (tail)\n{proc.stdout[-6000:]}"
        f"\n--- stderr (tail)\n{proc.stderr[-6000:]}"
    )


def read_metrics(output_dir):
    with open(Path(output_dir) / "metrics.json") as f:
        return [json.loads(line) for line in f if line.strip()]


class LogRecords(logging.Handler):
    """Collects the messages of the records a logger emits (attach with ``addHandler``)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def text(self):
        return "\n".join(self.messages)


def markdown_rows(text: str):
    """The stripped cells of every row of the markdown tables in ``text`` (header rows included,
    rules left out): the tools pad their columns (``tabulate``)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|") and set(line) - set("|-: "):
            rows.append([cell.strip() for cell in line[1:-1].split("|")])
    return rows


class BoxesAsDeltas:
    """A box transform whose 'deltas' are the predicted boxes themselves (the assigners' hand
    cases give predicted boxes directly)."""

    def apply_deltas(self, deltas, boxes):
        return deltas.clone()


def random_logits_and_deltas(priors, transform, seed, num_classes, anchor_scale, ties=False):
    """Random head outputs for ``priors``: (R, K) logits (N(0, 2)), then (R, 4) box deltas, in
    that order from one generator seeded ``seed``. For a point decoding
    (``Box2BoxTransformLinear``) the deltas are U(-1, 4), some of them inverted boxes; for anchors
    N(0, ``anchor_scale``). ``ties`` rounds both: many equal values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    logits = torch.randn(R, num_classes, generator=g) * 2
    if type(transform).__name__ == "Box2BoxTransformLinear":
        deltas = torch.rand(R, 4, generator=g) * 5 - 1
    else:
        deltas = torch.randn(R, 4, generator=g) * anchor_scale
    if ties:
        logits, deltas = logits.round(), deltas.round()
    return logits, deltas


def random_deltas_and_logits(priors, seed, anchors, num_classes, quality=False):
    """Random head outputs for ``priors``, drawn in the order deltas, logits (N(0, 2)) and, with
    ``quality``, an (R, 1) quality logit (N(0, 1)) from one generator seeded ``seed``: deltas
    N(0, 0.5) for ``anchors``, else U(0, 6) (point distances in strides). Returns (logits,
    deltas, quality or None)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    deltas = torch.randn(R, 4, generator=g) * 0.5 if anchors else torch.rand(R, 4, generator=g) * 6
    logits = torch.randn(R, num_classes, generator=g) * 2
    return logits, deltas, torch.randn(R, 1, generator=g) if quality else None


def train_steps(model, batch, steps: int = 2, lr: float = 0.01):
    """``steps`` SGD steps of ``model`` on ``batch``, step i in an ``EventStorage(i)``; each step
    has finite losses (at least ``loss_cls`` and ``loss_box_reg``) and a gradient on every
    trainable parameter, the box output's included, and the class output's weights move.
    Returns per step (its losses, its latest logged scalars)."""
    import torch
    from detectron2.utils.events import EventStorage

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    before = model.head.cls_score.weight.detach().clone()
    out = []
    for it in range(steps):
        with EventStorage(it) as storage:
            losses = model(batch)
            assert set(losses) >= {"loss_cls", "loss_box_reg"}, sorted(losses)
            assert all(torch.isfinite(v) for v in losses.values()), losses
            optimizer.zero_grad()
            sum(losses.values()).backward()
            unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not unused, unused[:5]
            assert model.head.bbox_pred.weight.grad.abs().sum() > 0
            optimizer.step()
            out.append((losses, {k: v[0] for k, v in storage.latest().items()}))
    assert not torch.equal(before, model.head.cls_score.weight)
    return out


def jittered_priors(image_size=(64, 96), strides=(8, 16), jitter=3.0, seed=0):
    """Point priors of ``make_priors`` moved by up to ``jitter`` pixels each: not a grid, so the
    assigners take every (GT, prior) pair as a candidate pair (``AllPairs``)."""
    import torch

    from dense_assign.structures import Priors

    base = make_priors(image_size=image_size, strides=strides)
    g = torch.Generator().manual_seed(seed)
    centers = base.centers + torch.rand(base.centers.shape, generator=g) * (2 * jitter) - jitter
    half = base.strides[:, None] / 2
    return Priors(
        boxes=torch.cat([centers - half, centers + half], dim=1),
        centers=centers,
        strides=base.strides,
        levels=base.levels,
        level_sizes=base.level_sizes,
        grid_sizes=base.grid_sizes,
        level_strides=base.level_strides,
        num_anchors=1,
        offset=0.5,
    )


def config_priors(path: str, image_size):
    """The priors of the model config ``path`` (under the repository) for an ``image_size`` input,
    and the model's box transform."""
    from detectron2.config import instantiate

    model = load_model_cfg(path)
    priors = make_priors(image_size, anchor_generator=instantiate(model.prior_generator))
    return priors, instantiate(model.box2box_transform)


def retinanet_a1_cfg():
    """The packaged RetinaNet model config with one square anchor of 4 x stride per location
    (#A = 1), the anchor-box layout the point assigners are also tested on."""
    cfg = load_model_cfg("configs/common/models/retinanet.py")
    cfg.head.num_anchors = 1
    cfg.prior_generator.sizes = [[32], [64], [128], [256], [512]]
    cfg.prior_generator.aspect_ratios = [1.0]
    return cfg


def points_or_a1_priors(kind: str, image_size):
    """Priors for an ``image_size`` input and a box transform: ``kind`` "retina_a1", the anchors
    of :func:`retinanet_a1_cfg` and its box transform; otherwise the points of the packaged model
    config ``configs/common/models/{kind}.py`` and None (the assigner's default decoding)."""
    from detectron2.config import instantiate

    if kind != "retina_a1":
        cfg = load_model_cfg(f"configs/common/models/{kind}.py")
        return make_priors(image_size, anchor_generator=instantiate(cfg.prior_generator)), None
    cfg = retinanet_a1_cfg()
    priors = make_priors(image_size, anchor_generator=instantiate(cfg.prior_generator))
    return priors, instantiate(cfg.box2box_transform)

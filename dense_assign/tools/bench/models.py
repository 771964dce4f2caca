"""The train and inference parts: each ``--train-configs`` model next to detectron2's model-zoo
FCOS and RetinaNet given the backbone (ResNet, FPN width), head width and pixel statistics of
``--reference-config``, on one random batch for all of them: the median time of a training step
(forward + backward) or of an inference call, and its peak extra memory. A model that fails gets a
row with its error instead of stopping the others.
"""

import copy
import glob
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from .. import ToolError, config_file_path
from . import D2_FCOS, D2_RETINANET
from .data import random_batch
from .report import fmt
from .timing import mb, median_time, peak_extra_memory

logger = logging.getLogger("dense_assign.tools.benchmark")


def default_train_configs() -> List[str]:
    """The R-50-FPN method configs of configs/COCO-Detection (paths under configs/)."""
    from ...model_zoo import config_root

    root = config_root()
    return sorted(
        os.path.relpath(p, root)
        for p in glob.glob(os.path.join(root, "COCO-Detection", "*_R_50_FPN_1x.py"))
    )


def _res5_channels(depth: int) -> int:
    return 512 if depth in (18, 34) else 2048


def _same_backbone(d2_model, ref_model):
    """Give a detectron2 model config the backbone (ResNet, FPN width), head width and pixel
    statistics of ``ref_model``, keeping its own P6/P7 input (C5 for RetinaNet, P5 for FCOS)."""
    d2_model.backbone.bottom_up = copy.deepcopy(ref_model.backbone.bottom_up)
    d2_model.backbone.out_channels = ref_model.backbone.out_channels
    top = d2_model.backbone.top_block
    if top.get("in_feature", "res5") == "res5":
        top.in_channels = _res5_channels(int(ref_model.backbone.bottom_up.stages.depth))
    else:
        top.in_channels = ref_model.backbone.out_channels
    d2_model.head.input_shape = copy.deepcopy(ref_model.head.input_shape)
    d2_model.head.conv_dims = list(ref_model.head.conv_dims)
    d2_model.pixel_mean = list(ref_model.pixel_mean)
    d2_model.pixel_std = list(ref_model.pixel_std)
    d2_model.num_classes = ref_model.num_classes
    return d2_model


@dataclass
class ModelCase:
    """One row of the train / inference tables: ``build()`` makes the model on the device."""

    name: str
    source: str
    build: Callable[[], torch.nn.Module]
    num_classes: int


def model_cases(args, device) -> List[ModelCase]:
    """Our configs (``--train-configs``) and detectron2's FCOS / RetinaNet on the backbone of
    ``--reference-config`` (default: the first FCOS config given, else the first config)."""
    from detectron2 import model_zoo
    from detectron2.config import instantiate

    from ...engine import build_model, load_config
    from .. import _quiet, load_tool_config

    names = args.train_configs or default_train_configs()
    if not names:
        raise ToolError("no --train-configs given and none found in configs/COCO-Detection")
    paths = [config_file_path(n, "--train-configs") for n in names]
    cases = []
    for name, path in zip(names, paths):
        cfg = load_tool_config(path, args.opts)
        num_classes = int(cfg.model.num_classes)

        def build(cfg=cfg):
            cfg.train.device = str(device)
            with _quiet("dense_assign.engine.trainer"):
                return build_model(cfg)

        cases.append(
            ModelCase(os.path.splitext(os.path.basename(name))[0], name, build, num_classes)
        )
    ref_name = args.reference_config or next(
        (n for n in names if os.path.basename(n).startswith("fcos")), names[0]
    )
    ref_model = load_config(config_file_path(ref_name, "--reference-config"), args.opts).model
    for label, zoo in (
        (D2_FCOS, "common/models/fcos.py"),
        (D2_RETINANET, "common/models/retinanet.py"),
    ):
        d2_model = _same_backbone(model_zoo.get_config(zoo).model, ref_model)

        def build(d2_model=d2_model):
            return instantiate(d2_model).to(device)

        source = f"detectron2 model zoo {zoo}, backbone of {ref_name}"
        cases.append(ModelCase(label, source, build, int(ref_model.num_classes)))
    return cases


def bench_models(args, device, parts) -> Dict:
    """The train and / or inference parts' results (the JSON's ``train`` / ``inference``) for the
    command line's ``args``, one row per model case."""
    from detectron2.utils.events import EventStorage

    generator = torch.Generator().manual_seed(args.seed)
    cuda = device.type == "cuda"
    train_images = args.train_images or (8 if cuda else 2)
    train_size = tuple(args.train_size or ((800, 1333) if cuda else (512, 512)))
    cases = model_cases(args, device)
    # one batch for every model: classes valid for all of them
    num_classes = min(c.num_classes for c in cases)
    train_batch = random_batch(train_images, train_size, args.train_num_gt, generator, num_classes)
    infer_batch = [
        {"image": x["image"]}
        for x in random_batch(args.inference_images, tuple(args.inference_size), 0, generator)
    ]
    out = {}
    if "train" in parts:
        out["train"] = {
            "images": train_images,
            "image_size": list(train_size),
            "num_gt": args.train_num_gt,
            "amp": bool(args.amp),
            "repeats": args.train_repeats,
            "rows": [],
        }
    if "inference" in parts:
        out["inference"] = {
            "images": args.inference_images,
            "image_size": list(args.inference_size),
            "repeats": args.train_repeats,
            "rows": [],
        }
    for case in cases:
        torch.manual_seed(args.seed)
        model = case.build()
        if "train" in out:
            model.train()
            batch = [
                {k: (v.to(device) if hasattr(v, "to") else v) for k, v in x.items()}
                for x in train_batch
            ]

            def step():
                with EventStorage(0), torch.autocast(device.type, enabled=args.amp):
                    losses = model(batch)
                    total = sum(losses.values())
                total.backward()
                model.zero_grad(set_to_none=True)
                return float(total.detach())

            row = _model_row(case, step, device, args)
            out["train"]["rows"].append(row)
            logger.info(f"train step {case.name}: {fmt(row['time_ms'], '{:.1f}')} ms")
        if "inference" in out:
            model.eval()
            images = [{"image": x["image"].to(device)} for x in infer_batch]

            def infer():
                with torch.no_grad():
                    return model(images)

            row = _model_row(case, infer, device, args)
            row["images_per_s"] = (
                args.inference_images / (row["time_ms"] / 1e3) if row["time_ms"] else None
            )
            out["inference"]["rows"].append(row)
            logger.info(f"inference {case.name}: {fmt(row['images_per_s'], '{:.2f}')} images/s")
        model = None  # frees it (step / infer read this variable) before the next build
    for part in out.values():
        ref = next((r for r in part["rows"] if r["name"] == D2_FCOS and r["time_ms"]), None)
        for row in part["rows"]:
            ok = ref is not None and row["time_ms"] is not None
            row["ratio_to_d2_fcos"] = row["time_ms"] / ref["time_ms"] if ok else None
    return out


def _model_row(case, fn, device, args) -> Dict:
    """A train / inference table row of ``case``: median time of ``fn`` over
    ``--train-repeats`` calls and its peak extra memory (unless ``--no-memory``). A model that
    fails gets a row with the error instead of stopping the others (detectron2 v0.6's FCOS fails
    under autocast: fvcore's GIoU gets its fp16 boxes next to fp32 targets)."""
    row = {"name": case.name, "source": case.source, "time_ms": None, "peak_mem_mb": None}
    try:
        row["time_ms"] = median_time(fn, device, args.train_repeats, args.warmup) * 1e3
        row["peak_mem_mb"] = mb(peak_extra_memory(fn, device) if args.memory else None)
    except Exception as e:  # noqa: BLE001  (reported in the row and the log)
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        logger.warning(f"{case.name}: {row['error']}")
    return row

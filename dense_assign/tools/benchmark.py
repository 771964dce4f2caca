"""Speed and memory of label assignment, training steps and inference, next to detectron2's own.

    python -m dense_assign.tools.benchmark --output benchmark.json [--device cpu|cuda]
    python -m dense_assign.tools.benchmark --parts assign --image-size 800 1333 \
        --num-gt 1 10 100 1000 --repeats 5 --output benchmark_assign.json
    python -m dense_assign.tools.benchmark --train-step --inference --output benchmark_models.json
    python -m dense_assign.tools.benchmark --device cuda --train-step --amp --train-images 2

Three parts (``--parts``, or the shorthands ``--assign`` / ``--train-step`` / ``--inference``;
default: all three), measured in one run, printed as markdown tables and written to ``--output``:

assign
    Label assignment of one image of ``--image-size`` (default 800 x 1333, padded to 32, P3-P7)
    with M random GT boxes for each M of ``--num-gt`` (default 1 10 100 1000), K = 80 classes,
    for every registered assigner (with the priors and settings of the first config of
    ``configs/common/models`` that uses it; prediction-aware ones get random head outputs of the
    right shapes, with ``requires_grad`` as in training), each with its per-GT candidate windows
    (the default) and, in the "<assigner> (dense)" row, its dense GT x prior reference
    (``--no-dense`` skips those), for detectron2's FCOS label assignment
    (``FCOS.label_anchors``, which calls ``match_anchors`` in v0.6 and ``_match_anchors`` on main)
    and for detectron2's RetinaNet (``RetinaNet.label_anchors``, its anchors and ``Matcher``), on
    the same boxes: median time over ``--repeats`` calls after ``--warmup``, the ratio to
    detectron2's FCOS, and the peak extra memory of one call.
train
    One training step (forward + backward, no optimizer step) of each ``--train-configs`` model
    (default: the R-50-FPN method configs of ``configs/COCO-Detection``) next to detectron2's FCOS
    and RetinaNet (its model-zoo LazyConfigs, given the backbone of ``--reference-config``) on the
    same random batch: ``--train-images`` images of ``--train-size`` (CPU: 2 of 512 x 512, CUDA: 8
    of 800 x 1333) with ``--train-num-gt`` random boxes each.
inference
    Images per second of each of those models in eval mode (``--inference-images`` images of
    ``--inference-size`` per call, default 1 of 800 x 1333), next to detectron2's.

Peak extra memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before the
call; on CPU the peak of the running sum of the CPU allocator's allocations and frees during the
call, recorded by ``torch.profiler.profile(profile_memory=True)`` in a separate (untimed) call.
Both count tensors only (what the call allocates beyond its inputs), not the allocator's cache
or the process's other memory.
"""

import argparse
import contextlib
import copy
import glob
import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from . import (
    ToolError,
    add_overrides_arg,
    config_file_path,
    priors_for_image_size,
    run_cli,
    tool_parser,
    write_json,
)

logger = logging.getLogger("dense_assign.tools.benchmark")

PARTS = ("assign", "train", "inference")
NUM_CLASSES = 80  # COCO
#: Reference config (under configs/) of each assigner: the first that uses it wins.
PREFERRED_MODEL_CONFIGS = (
    "common/models/fcos.py",
    "common/models/af_baseline.py",
    "common/models/pseudo_iou.py",
    "common/models/atss.py",
    "common/models/autoassign.py",
    "common/models/sapd.py",
    "common/models/retinanet.py",
)
D2_FCOS = "detectron2 FCOS"
D2_RETINANET = "detectron2 RetinaNet"
SIZE_DIVISIBILITY = 32
#: The memory measurement used on CPU (written into the JSON).
CPU_MEMORY_METHOD = (
    "torch.profiler profile_memory: peak of the running sum of CPU allocator allocations/frees "
    "during one call (tensors only)"
)
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated minus memory_allocated before the call"


# ----------------------------------------------------------------------------- measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device, repeats: int, warmup: int) -> float:
    """Median wall time (seconds) of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        out = fn()
        del out
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        del out
    return statistics.median(times)


def _profiled_peak(prof) -> Optional[int]:
    """Peak of the running sum of allocation sizes (frees are negative) in a profile."""
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except Exception:  # API of torch's profiler not available
        return None
    allocs, stack = [], list(roots)
    while stack:
        ev = stack.pop()
        stack.extend(ev.children)
        extra = getattr(ev, "extra_fields", None)
        if type(extra).__name__ == "_ExtraFields_Allocation" and extra.device.type == "cpu":
            allocs.append((ev.start_time_ns, int(extra.alloc_size)))
    allocs.sort(key=lambda x: x[0])
    running = peak = 0
    for _, size in allocs:
        running += size
        peak = max(peak, running)
    return peak


def peak_extra_memory(fn: Callable[[], object], device) -> Optional[int]:
    """Bytes allocated at the peak of one ``fn()`` call beyond what existed before (see the module
    doc); None when it cannot be measured."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
    return _profiled_peak(prof)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Redirect the process's stderr (fd 2) to /dev/null: kineto prints two lines
    ("profiler_start" / "profiler_stop") from C++ on every profiled call, whatever its log level."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreter)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ----------------------------------------------------------------------------- random inputs
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
    from ..structures import DensePredictions

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


# ----------------------------------------------------------------------------- assigners
@dataclass
class AssignCase:
    """One row of the assignment benchmark: ``run(gt)`` assigns one image."""

    name: str
    source: str
    num_priors: int
    prediction_aware: bool
    run: Callable[[object], object]
    notes: str = ""


def detectron2_fcos_matching_method() -> str:
    """Name of detectron2 FCOS's matching method: ``match_anchors`` (v0.6) or
    ``_match_anchors`` (main); both are reached through ``label_anchors``, which is timed."""
    from detectron2.modeling.meta_arch.fcos import FCOS

    for name in ("match_anchors", "_match_anchors"):
        if hasattr(FCOS, name):
            return name
    raise ToolError("detectron2's FCOS has neither match_anchors nor _match_anchors")


def _bare(cls, **attrs):
    """An instance of a detectron2 meta-architecture with only the attributes its label
    assignment reads (no backbone or head is built)."""
    obj = cls.__new__(cls)
    torch.nn.Module.__init__(obj)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def _dummy_features(strides, image_size, device):
    h, w = (-(-x // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY for x in image_size)
    return [torch.zeros(1, 1, -(-h // s), -(-w // s), device=device) for s in strides]


def detectron2_cases(image_size, device, num_classes=NUM_CLASSES) -> List[AssignCase]:
    """detectron2's FCOS and RetinaNet label assignment, set up as its model-zoo configs."""
    from detectron2 import model_zoo
    from detectron2.config import instantiate
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.meta_arch.fcos import FCOS
    from detectron2.modeling.meta_arch.retinanet import RetinaNet

    strides = [8, 16, 32, 64, 128]
    fcos_cfg = model_zoo.get_config("common/models/fcos.py").model
    radius = float(fcos_cfg.get("center_sampling_radius", 1.5))
    # FCOS builds this generator itself: one box of stride size per location, offset 0
    # (the generators make their grids on the device of their buffers: moved to ``device``)
    fcos_anchors = DefaultAnchorGenerator(
        sizes=[[s] for s in strides], aspect_ratios=[1.0], strides=strides
    ).to(device)(_dummy_features(strides, image_size, device))
    fcos = _bare(FCOS, num_classes=num_classes, center_sampling_radius=radius)
    retina_cfg = model_zoo.get_config("common/models/retinanet.py").model
    retina_gen = instantiate(retina_cfg.anchor_generator).to(device)
    retina_anchors = retina_gen(_dummy_features(retina_gen.strides, image_size, device))
    retina = _bare(
        RetinaNet, num_classes=num_classes, anchor_matcher=instantiate(retina_cfg.anchor_matcher)
    )
    method = detectron2_fcos_matching_method()
    return [
        AssignCase(
            D2_FCOS,
            f"FCOS.label_anchors ({method})",
            sum(len(a) for a in fcos_anchors),
            False,
            lambda gt: fcos.label_anchors(fcos_anchors, [gt]),
        ),
        AssignCase(
            D2_RETINANET,
            "RetinaNet.label_anchors (Matcher 0.4/0.5)",
            sum(len(a) for a in retina_anchors),
            False,
            lambda gt: retina.label_anchors(retina_anchors, [gt]),
        ),
    ]


def reference_model_configs() -> Dict[str, str]:
    """{assigner class name: config path under configs/} for the assigners the packaged model
    configs use (``PREFERRED_MODEL_CONFIGS`` first, then the others alphabetically)."""
    from ..model_zoo import config_root, get_config

    root = config_root()
    others = sorted(
        os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "common", "models", "*.py"))
    )
    found: Dict[str, str] = {}
    for rel in list(PREFERRED_MODEL_CONFIGS) + others:
        try:
            target = get_config(rel).model.assigner._target_
        except Exception:  # a helper module, or a model without an assigner node
            continue
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        found.setdefault(name.rsplit(".", 1)[-1], rel)
    return found


def dense_assign_cases(
    image_size, device, generator, num_classes=NUM_CLASSES, with_dense: bool = True
) -> List[AssignCase]:
    """Every registered assigner, built as its reference config builds it (defaults and point
    priors at (k + 0.5) * stride when no config uses it); with ``with_dense``, each also as its
    dense reference (``dense=True``: GT chunks x all priors instead of candidate windows), in a
    row named ``"<assigner> (dense)"``."""
    from detectron2.config import instantiate

    import dense_assign.modeling  # noqa: F401  (registers every assigner)

    from ..assigners.candidates import PriorGrid
    from ..meta_arch import point_prior_generator
    from ..model_zoo import get_config
    from ..registry import ASSIGNER_REGISTRY

    refs = reference_model_configs()
    cases = []
    for name in sorted(k for k, _ in ASSIGNER_REGISTRY):
        rel = refs.get(name)
        if rel is not None:
            model = get_config(rel).model
            model.num_classes = num_classes
            assigner = instantiate(model.assigner)
            generator_ = instantiate(model.prior_generator)
        else:
            assigner = ASSIGNER_REGISTRY.get(name)(num_classes=num_classes)
            generator_ = point_prior_generator()
        assigner.to(device)
        priors = priors_for_image_size(generator_, image_size, SIZE_DIVISIBILITY, device)
        aware = bool(getattr(assigner, "prediction_aware", False))
        preds = None
        if aware:
            fsn = getattr(assigner, "fsn", None)
            channels = fsn.in_channels if fsn is not None else 256
            preds = random_predictions(priors, num_classes, channels, generator, device, grad=True)

        variants = [(name, assigner, rel or "defaults")]
        if with_dense and hasattr(assigner, "dense"):
            # the dense (GT chunk x R) reference of the same assigner: "before" candidate windows
            reference = copy.deepcopy(assigner)
            reference.dense = True
            variants.append((f"{name} (dense)", reference, f"{rel or 'defaults'}, dense=True"))
        for label, runner, source in variants:

            def run(gt, assigner=runner, priors=priors, preds=preds):
                # a training step builds new priors: their grid is derived again, in the call
                PriorGrid.forget(priors)
                return assigner(priors, gt, predictions=preds, image_size=gt.image_size)

            cases.append(
                AssignCase(
                    label,
                    source,
                    len(priors),
                    aware,
                    run,
                    "random predictions, requires_grad" if aware else "",
                )
            )
    return cases


def bench_assign(args, device) -> Dict:
    generator = torch.Generator().manual_seed(args.seed)
    image_size = tuple(args.image_size)
    cases = dense_assign_cases(
        image_size, device, generator, with_dense=args.dense
    ) + detectron2_cases(image_size, device)
    gts = {
        m: random_gt(m, image_size, NUM_CLASSES, generator, tuple(args.box_sides), device)
        for m in args.num_gt
    }
    rows = []
    for case in cases:
        row = {
            "name": case.name,
            "source": case.source,
            "num_priors": case.num_priors,
            "prediction_aware": case.prediction_aware,
            "notes": case.notes,
            "results": {},
        }
        for m, gt in gts.items():
            with torch.no_grad() if not case.prediction_aware else contextlib.nullcontext():
                fn = lambda: case.run(gt)  # noqa: E731
                seconds = median_time(fn, device, args.repeats, args.warmup)
                mem = peak_extra_memory(fn, device) if args.memory else None
            row["results"][str(m)] = {"time_ms": seconds * 1e3, "peak_mem_mb": _mb(mem)}
            logger.info(
                f"assign {case.name} M={m}: {seconds * 1e3:.2f} ms"
                + (f", peak {_mb(mem):.1f} MB" if mem is not None else "")
            )
        rows.append(row)
    ref = next(r for r in rows if r["name"] == D2_FCOS)
    for row in rows:
        for m, res in row["results"].items():
            res["ratio_to_d2_fcos"] = res["time_ms"] / ref["results"][m]["time_ms"]
    return {
        "image_size": list(image_size),
        "padded_to": SIZE_DIVISIBILITY,
        "num_classes": NUM_CLASSES,
        "num_gt": list(args.num_gt),
        "box_sides": list(args.box_sides),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- models
def default_train_configs() -> List[str]:
    """The R-50-FPN method configs of configs/COCO-Detection (paths under configs/)."""
    from ..model_zoo import config_root

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
    name: str
    source: str
    build: Callable[[], torch.nn.Module]
    num_classes: int


def model_cases(args, device) -> List[ModelCase]:
    """Our configs (``--train-configs``) and detectron2's FCOS / RetinaNet on the backbone of
    ``--reference-config`` (default: the first FCOS config given, else the first config)."""
    from detectron2 import model_zoo
    from detectron2.config import instantiate

    from ..engine import build_model, load_config
    from . import _quiet, load_tool_config

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
            logger.info(f"train step {case.name}: {_f(row['time_ms'], '{:.1f}')} ms")
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
            logger.info(f"inference {case.name}: {_f(row['images_per_s'], '{:.2f}')} images/s")
        del model
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
        row["peak_mem_mb"] = _mb(peak_extra_memory(fn, device) if args.memory else None)
    except Exception as e:  # noqa: BLE001  (reported in the row and the log)
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        logger.warning(f"{case.name}: {row['error']}")
    return row


# ----------------------------------------------------------------------------- report
def _mb(nbytes: Optional[int]) -> Optional[float]:
    return None if nbytes is None else nbytes / 2**20


def _f(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def markdown(results: Dict) -> str:
    """The markdown tables of a results dict (as written to the JSON)."""
    out = [
        f"Device: {results['device']} ({results['device_name']}), torch {results['torch']}, "
        f"{results['threads']} threads. Memory: {results['memory_method']}."
    ]
    a = results.get("assign")
    if a:
        ms = a["num_gt"]
        h, w = a["image_size"]
        out.append(
            f"\n### Label assignment, one {h}x{w} image, K={a['num_classes']}: median ms "
            f"(x detectron2 FCOS) / peak extra MB\n"
        )
        head = ["assigner", "source", "priors"] + [f"M={m}" for m in ms]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for row in a["rows"]:
            cells = [row["name"], row["source"], str(row["num_priors"])]
            for m in ms:
                r = row["results"][str(m)]
                cells.append(
                    f"{r['time_ms']:.2f} ({r['ratio_to_d2_fcos']:.2f}x) / "
                    f"{_f(r['peak_mem_mb'], '{:.1f}')}"
                )
            out.append("| " + " | ".join(cells) + " |")
    t = results.get("train")
    if t:
        h, w = t["image_size"]
        amp = ", forward in mixed precision (autocast fp16)" if t.get("amp") else ""
        out.append(
            f"\n### Training step (forward + backward), {t['images']} images of {h}x{w}, "
            f"{t['num_gt']} GT each{amp}\n"
        )
        out.append("| model | ms | x detectron2 FCOS | peak extra MB |")
        out.append("|---|---|---|---|")
        for row in t["rows"]:
            if row.get("error"):
                out.append(f"| {row['name']} | failed: {row['error']} | - | - |")
                continue
            out.append(
                f"| {row['name']} | {row['time_ms']:.1f} | {_f(row['ratio_to_d2_fcos'], '{:.2f}')} "
                f"| {_f(row['peak_mem_mb'], '{:.0f}')} |"
            )
    i = results.get("inference")
    if i:
        h, w = i["image_size"]
        out.append(f"\n### Inference, {i['images']} image(s) of {h}x{w} per call\n")
        out.append("| model | images/s | ms | x detectron2 FCOS (time) | peak extra MB |")
        out.append("|---|---|---|---|---|")
        for row in i["rows"]:
            if row.get("error"):
                out.append(f"| {row['name']} | failed: {row['error']} | - | - | - |")
                continue
            out.append(
                f"| {row['name']} | {row['images_per_s']:.2f} | {row['time_ms']:.1f} | "
                f"{_f(row['ratio_to_d2_fcos'], '{:.2f}')} | {_f(row['peak_mem_mb'], '{:.0f}')} |"
            )
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("benchmark", __doc__)
    parser.add_argument(
        "--output",
        default="benchmark.json",
        metavar="FILE.json",
        help="JSON results (default benchmark.json)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS + ("all",),
        default=None,
        help="what to measure (default: all)",
    )
    parser.add_argument("--assign", action="store_true", help="shorthand: add the assign part")
    parser.add_argument("--train-step", action="store_true", help="shorthand: add the train part")
    parser.add_argument(
        "--inference", action="store_true", help="shorthand: add the inference part"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurements"
    )
    g = parser.add_argument_group("assign part")
    g.add_argument(
        "--image-size",
        "--sizes",
        type=int,
        nargs=2,
        default=(800, 1333),
        metavar=("H", "W"),
        help="network input (default 800 1333)",
    )
    g.add_argument(
        "--num-gt",
        type=int,
        nargs="+",
        default=(1, 10, 100, 1000),
        metavar="M",
        help="GT boxes per image (default 1 10 100 1000)",
    )
    g.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (default 5)")
    g.add_argument(
        "--no-dense",
        dest="dense",
        action="store_false",
        help="skip the '<assigner> (dense)' rows (the dense references of the candidate windows)",
    )
    g.add_argument(
        "--box-sides",
        type=float,
        nargs=2,
        default=(8.0, 400.0),
        metavar=("MIN", "MAX"),
        help="range of the random boxes' sides in pixels (log-uniform; default 8 400)",
    )
    g = parser.add_argument_group("train / inference parts")
    g.add_argument(
        "--train-configs",
        nargs="+",
        default=None,
        metavar="CFG",
        help="config files or paths under configs/ (default: " "COCO-Detection/*_R_50_FPN_1x.py)",
    )
    g.add_argument(
        "--reference-config",
        default=None,
        metavar="CFG",
        help="whose backbone detectron2's FCOS / RetinaNet get (default: the first "
        "fcos* of --train-configs, else the first)",
    )
    g.add_argument("--train-images", type=int, default=None, help="CPU default 2, CUDA 8")
    g.add_argument(
        "--train-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="CPU default 512 512, CUDA 800 1333",
    )
    g.add_argument("--train-num-gt", type=int, default=10, help="GT boxes per image (default 10)")
    g.add_argument(
        "--train-repeats",
        type=int,
        default=3,
        help="timed steps / inference calls per model (default 3)",
    )
    g.add_argument(
        "--amp",
        action="store_true",
        help="training step: forward under torch.autocast (fp16), as AMPTrainer (CUDA only)",
    )
    g.add_argument("--inference-images", type=int, default=1)
    g.add_argument("--inference-size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    add_overrides_arg(g, "config overrides applied to every --train-configs config")
    return parser


def selected_parts(args) -> List[str]:
    chosen = set(args.parts or [])
    chosen |= {
        p
        for p, flag in (
            ("assign", args.assign),
            ("train", args.train_step),
            ("inference", args.inference),
        )
        if flag
    }
    if not chosen or "all" in chosen:
        return list(PARTS)
    return [p for p in PARTS if p in chosen]


def _check_args(args):
    if args.repeats < 1 or args.train_repeats < 1 or args.warmup < 0:
        raise ToolError("--repeats and --train-repeats must be >= 1 and --warmup >= 0")
    if any(m < 0 for m in args.num_gt):
        raise ToolError(f"--num-gt values must be >= 0, got {list(args.num_gt)}")
    if min(args.image_size) < 1 or not 0 < args.box_sides[0] <= args.box_sides[1]:
        raise ToolError("--image-size must be positive and --box-sides 0 < MIN <= MAX")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ToolError("--device cuda, but CUDA is not available on this machine")
    if args.amp and args.device != "cuda":
        raise ToolError("--amp: mixed precision is measured on CUDA only (--device cuda)")


def run(args) -> Dict:
    _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = selected_parts(args)
    import detectron2

    results = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else (platform.processor() or platform.machine())
        ),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "threads": torch.get_num_threads(),
        "parts": parts,
        "memory_method": (
            (CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD)
            if args.memory
            else "not measured (--no-memory)"
        ),
        "detectron2_fcos_matching": detectron2_fcos_matching_method(),
    }
    if "assign" in parts:
        results["assign"] = bench_assign(args, device)
    if "train" in parts or "inference" in parts:
        results.update(bench_models(args, device, parts))
    print(markdown(results))
    write_json(args.output, results)
    return results


def main(argv=None) -> Dict:
    return run_cli(build_parser, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

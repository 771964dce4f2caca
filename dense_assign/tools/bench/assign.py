"""The assignment part: label assignment of one image with M random GTs, for every registered
assigner and for detectron2's FCOS and RetinaNet, on the same boxes.

Each assigner is built as the first ``configs/common/models`` config that uses it builds it
(``PREFERRED_MODEL_CONFIGS`` first); prediction-aware ones get random head outputs that require
grad, as in training. detectron2's label assignment runs on a bare instance of its
meta-architecture holding only the attributes it reads, so no backbone is built.
"""

import contextlib
import glob
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from .. import ToolError, priors_for_image_size
from . import D2_FCOS, D2_RETINANET, NUM_CLASSES, SIZE_DIVISIBILITY
from .data import random_gt, random_predictions
from .timing import mb, median_time, median_times, op_breakdown, peak_extra_memory

logger = logging.getLogger("dense_assign.tools.benchmark")

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
    """Empty feature maps of the padded ``image_size`` at each stride (what anchor generators
    read: their shapes)."""
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
    from ...model_zoo import config_root, get_config

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


def dense_assign_cases(image_size, device, generator, num_classes=NUM_CLASSES) -> List[AssignCase]:
    """Every registered assigner, built as its reference config builds it (defaults and point
    priors at (k + 0.5) * stride when no config uses it)."""
    from detectron2.config import instantiate

    import dense_assign.modeling  # noqa: F401  (registers every assigner)

    from ...meta_arch import point_prior_generator
    from ...model_zoo import get_config
    from ...registry import ASSIGNER_REGISTRY

    refs = reference_model_configs()
    cases = []
    for name in sorted(k for k, _ in ASSIGNER_REGISTRY):
        rel = refs.get(name)
        if rel is not None:
            model = get_config(rel).model
            model.num_classes = num_classes
            assigner = instantiate(model.assigner)
            prior_generator = instantiate(model.prior_generator)
        else:
            assigner = ASSIGNER_REGISTRY.get(name)(num_classes=num_classes)
            prior_generator = point_prior_generator()
        assigner.to(device)
        priors = priors_for_image_size(prior_generator, image_size, SIZE_DIVISIBILITY, device)
        aware = bool(getattr(assigner, "prediction_aware", False))
        preds = None
        if aware:
            fsn = getattr(assigner, "fsn", None)
            channels = fsn.in_channels if fsn is not None else 256
            preds = random_predictions(priors, num_classes, channels, generator, device, grad=True)

        def run(gt, assigner=assigner, priors=priors, preds=preds):
            # a training step reuses the priors of a batch size seen before, and the grid kept
            # on them (OneStageDetector.priors_for): only the first call measures the grid
            return assigner(priors, gt, predictions=preds, image_size=gt.image_size)

        notes = "random predictions, requires_grad" if aware else ""
        cases.append(AssignCase(name, rel or "defaults", len(priors), aware, run, notes))
    return cases


def _without_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn()

    return run


def bench_assign(args, device) -> Dict:
    """The assignment part's results (the JSON's ``assign``) for the command line's ``args``:
    a row per case with, per M of ``--num-gt``, the median time, the peak extra memory and the
    ratio to detectron2's FCOS."""
    generator = torch.Generator().manual_seed(args.seed)
    image_size = tuple(args.image_size)
    cases = dense_assign_cases(image_size, device, generator)
    if args.assigners:
        known = {c.name for c in cases}
        unknown = sorted(set(args.assigners) - known)
        if unknown:
            raise ToolError(
                f"--assigners: {', '.join(unknown)} not registered; choose among "
                f"{', '.join(sorted(known))}"
            )
        cases = [c for c in cases if c.name in args.assigners]
    profiled = {c.name for c in cases}  # --profile: ours, not detectron2's
    cases += detectron2_cases(image_size, device)
    gts = {
        m: random_gt(m, image_size, NUM_CLASSES, generator, tuple(args.box_sides), device)
        for m in args.num_gt
    }
    d2_fcos = next(c for c in cases if c.name == D2_FCOS)
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
            res = row["results"][str(m)] = {}
            with torch.no_grad() if not case.prediction_aware else contextlib.nullcontext():
                fn = lambda: case.run(gt)  # noqa: E731
                if args.paired and case is not d2_fcos:
                    ref = _without_grad(lambda: d2_fcos.run(gt))
                    seconds, ref_s = median_times([fn, ref], device, args.repeats, args.warmup)
                    res["d2_fcos_paired_ms"] = ref_s * 1e3
                    res["ratio_to_d2_fcos"] = seconds / ref_s
                else:
                    seconds = median_time(fn, device, args.repeats, args.warmup)
                mem = peak_extra_memory(fn, device) if args.memory else None
            res.update({"time_ms": seconds * 1e3, "peak_mem_mb": mb(mem)})
            logger.info(
                f"assign {case.name} M={m}: {seconds * 1e3:.2f} ms"
                + (f", peak {mb(mem):.1f} MB" if mem is not None else "")
            )
        if args.profile and case.name in profiled:
            m = max(args.num_gt)
            with torch.no_grad() if not case.prediction_aware else contextlib.nullcontext():
                row["profile"] = {
                    "num_gt": m,
                    **op_breakdown(lambda: case.run(gts[m]), device, args.profile),
                }
        rows.append(row)
    ref = next(r for r in rows if r["name"] == D2_FCOS)
    for row in rows:
        for m, res in row["results"].items():
            if "ratio_to_d2_fcos" not in res:  # --paired gave it already
                res["ratio_to_d2_fcos"] = res["time_ms"] / ref["results"][m]["time_ms"]
    return {
        "image_size": list(image_size),
        "padded_to": SIZE_DIVISIBILITY,
        "num_classes": NUM_CLASSES,
        "num_gt": list(args.num_gt),
        "box_sides": list(args.box_sides),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "profile_top": args.profile,
        "paired": bool(args.paired),
        "rows": rows,
    }

"""Speed and memory of label assignment, training steps and inference, next to detectron2's own.

    python -m dense_assign.tools.benchmark --output benchmark.json [--device cpu|cuda]
    python -m dense_assign.tools.benchmark --parts assign --image-size 800 1333 \
        --num-gt 1 10 100 1000 --repeats 5 --output benchmark_assign.json
    python -m dense_assign.tools.benchmark --parts assign --assigners SAPDAssigner AutoAssign \
        --num-gt 1 1000 --profile 12 --output benchmark_profile.json
    python -m dense_assign.tools.benchmark --train-step --inference --output benchmark_models.json
    python -m dense_assign.tools.benchmark --device cuda --train-step --amp --train-images 2
    python -m dense_assign.tools.benchmark --spread run1.json run2.json

Three parts (``--parts``, or the shorthands ``--assign`` / ``--train-step`` / ``--inference``;
default: all three), measured in one run, printed as markdown tables and written to ``--output``:

assign
    Label assignment of one image of ``--image-size`` (default 800 x 1333, padded to 32, P3-P7)
    with M random GT boxes for each M of ``--num-gt`` (default 1 10 100 1000), K = 80 classes,
    for every registered assigner (with the priors and settings of the first config of
    ``configs/common/models`` that uses it; prediction-aware ones get random head outputs of the
    right shapes, with ``requires_grad`` as in training), for detectron2's FCOS label assignment
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

``--assigners`` keeps the named registered assigners (detectron2's two rows always run: the
ratios divide by its FCOS). ``--profile TOP`` adds where the time of each of our assigners goes:
one call at the largest M under ``torch.profiler``, its TOP operators by self time (CPU, or device
time on CUDA) with their share of the call, in the JSON (``profile``) and as a table per assigner.
The priors of an image size and the grid kept on them are built once, as a training step of a
batch size seen before reuses them (``OneStageDetector.priors_for``).

Peak extra memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before the
call; on CPU the peak of the running sum of the CPU allocator's allocations and frees during the
call, recorded by ``torch.profiler.profile(profile_memory=True)`` in a separate (untimed) call.
Both count tensors only (what the call allocates beyond its inputs), not the allocator's cache
or the process's other memory.

``--paired`` times each row's calls in alternation with detectron2 FCOS's on the same boxes (row,
detectron2, row, ...) and divides the two medians of that series: on a machine whose speed
drifts, a ratio from calls seconds apart instead of minutes apart (each row then also costs
``--repeats`` calls of detectron2's FCOS: about 3 minutes more at M = 1000 on one CPU thread). The
detectron2 FCOS row keeps its own measurement; the JSON keeps each pair's detectron2 median
(``d2_fcos_paired_ms``).

``--spread A.json B.json ...`` measures nothing: it reads the assignment part of earlier runs and
prints, per assigner and M, the range over the runs of detectron2 FCOS's time divided by the
assigner's in the same run (on a machine whose speed drifts, one run's ratios can be off by a
third; the range says by how much).

This module is the command line (parser, ``run``, ``main``); the measurements, random inputs,
parts and tables are in ``dense_assign/tools/bench/`` (its package doc gives the layout).
"""

import argparse
import platform
import sys
from typing import Dict, List

import torch

from . import ToolError, add_overrides_arg, run_cli, tool_parser, write_json
from .bench.assign import bench_assign, detectron2_fcos_matching_method
from .bench.models import bench_models
from .bench.report import markdown, spread_table
from .bench.timing import CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD

__all__ = ["PARTS", "build_parser", "selected_parts", "run", "main", "markdown"]

PARTS = ("assign", "train", "inference")


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
        "--spread",
        nargs="+",
        default=None,
        metavar="FILE.json",
        help="measure nothing: print the range over these runs' assignment results of detectron2 "
        "FCOS's time / each assigner's",
    )
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
        "--assigners",
        nargs="+",
        default=None,
        metavar="NAME",
        help="registered assigners to measure (default: all); detectron2's rows always run",
    )
    g.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="also profile one call of each assigner at the largest M (torch.profiler) and print "
        "its TOP operators by self time (default 0: no profile)",
    )
    g.add_argument(
        "--paired",
        action="store_true",
        help="time each row in alternation with detectron2's FCOS at the same M and take the "
        "ratio from those two medians (default: detectron2's FCOS row, timed on its own)",
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
    if args.profile < 0:
        raise ToolError(f"--profile must be >= 0 (operators to list), got {args.profile}")
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


def spread(paths: List[str]) -> Dict:
    """``--spread``: the assignment parts of the JSON files at ``paths``, and their spread table
    printed."""
    import json

    runs = []
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ToolError(f"--spread: cannot read {path}: {e}") from e
        if not isinstance(data, dict) or "assign" not in data:
            raise ToolError(f"--spread: {path} has no assignment results (run with --parts assign)")
        runs.append(data["assign"])
    print(spread_table(runs))
    return {"spread": paths, "runs": runs}


def run(args) -> Dict:
    if args.spread:
        return spread(args.spread)
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

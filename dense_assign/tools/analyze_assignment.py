"""Dataset-level statistics of a config's label assignment, by GT size.

    python -m dense_assign.tools.analyze_assignment \
        --config-file configs/Synthetic-Detection/fcos_R_18_FPN.py \
        [--dataset NAME] [--num-images N] [--checkpoint model_final.pth] \
        [--output assignment_analysis.json] [key=value ...]

Runs the config's assigner (through the detector, as in training: ``OneStageDetector.assign``) on
every image of the dataset (default: the config's test set; ``--num-images`` for the first N),
mapped with the test resizing, and prints a markdown table per GT size (COCO: small < 32^2,
medium < 96^2 <= large, box area in the original image's pixels) and for all GTs: GT count,
positives per GT (mean, min), fraction of GTs without any positive, the share of the bucket's
positives on each pyramid level, and the mean IoU of the positives' prior boxes with their GT.
The per-image counts come from ``dense_assign.evaluation.assignment_counts``. The numbers go to
``--output`` (default ``<train.output_dir>/assignment_analysis.json``).

Prediction-aware assigners use the model's predictions: ``--checkpoint`` for a trained model,
else the random initialization's. AutoAssign's positives here are its hard labels (each candidate
point takes the GT of its largest w+), which only analysis uses.
"""

import argparse
import dataclasses
import logging
import os
import sys
from typing import Dict, List

import torch

from . import (
    ToolError,
    add_overrides_arg,
    assign_image,
    iter_mapped_inputs,
    load_model,
    load_tool_config,
    pipe_table,
    resolve_dataset,
    run_cli,
    tool_parser,
    write_json,
)

logger = logging.getLogger("dense_assign.tools.analyze_assignment")

#: COCO's area ranges (pycocotools ``areaRng``): small < 32^2 <= medium < 96^2 <= large.
SIZE_BUCKETS = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, float("inf")),
)
BUCKETS = tuple(b[0] for b in SIZE_BUCKETS) + ("all",)


class _Accumulator:
    """Sums of :func:`assignment_counts` over images for one bucket of GTs."""

    def __init__(self, num_levels: int):
        self.per_gt: List[torch.Tensor] = []
        self.per_level = torch.zeros(num_levels, dtype=torch.long)
        self.iou_sum = 0.0

    def add(self, per_gt, per_level, iou_sum):
        self.per_gt.append(per_gt.cpu())
        self.per_level += per_level.cpu()
        self.iou_sum += float(iou_sum)

    def summary(self, level_names: List[str]) -> Dict:
        per_gt = torch.cat(self.per_gt) if self.per_gt else torch.zeros(0, dtype=torch.long)
        num_gt, num_pos = len(per_gt), int(self.per_level.sum())
        return {
            "num_gt": num_gt,
            "num_pos": num_pos,
            "pos_per_gt_mean": float(per_gt.float().mean()) if num_gt else None,
            "pos_per_gt_min": int(per_gt.min()) if num_gt else None,
            "gt_without_pos": int((per_gt == 0).sum()),
            "gt_without_pos_frac": float((per_gt == 0).float().mean()) if num_gt else None,
            "pos_per_level": dict(zip(level_names, self.per_level.tolist())),
            "pos_frac_per_level": {
                n: (c / num_pos if num_pos else None)
                for n, c in zip(level_names, self.per_level.tolist())
            },
            "pos_prior_iou_mean": self.iou_sum / num_pos if num_pos else None,
        }


def original_areas(inputs: dict, gt) -> torch.Tensor:
    """GT box areas in the original image's pixels (COCO's size buckets), from the network input's
    boxes and the resize factors of the mapper."""
    h, w = inputs["image"].shape[-2:]
    sx = w / float(inputs.get("width", w))
    sy = h / float(inputs.get("height", h))
    return gt.gt_boxes.area().cpu() / (sx * sy)


def bucket_counts(priors, result, gt, num_classes: int, areas: torch.Tensor):
    """{bucket: assignment_counts(...)} of one image: for a size bucket, the positives matched to
    a GT of another bucket are turned into background before counting."""
    from ..evaluation import assignment_counts

    out = {"all": assignment_counts(priors, result, gt, num_classes)}
    matched = result.matched_idxs
    for name, lo, hi in SIZE_BUCKETS:
        in_bucket = ((areas >= lo) & (areas < hi)).to(matched.device)
        other = (matched >= 0) & ~in_bucket[matched.clamp(min=0)]
        labels = torch.where(other, torch.full_like(result.labels, num_classes), result.labels)
        per_gt, per_level, iou_sum = assignment_counts(
            priors, dataclasses.replace(result, labels=labels), gt, num_classes
        )
        out[name] = (per_gt[in_bucket], per_level, iou_sum)
    return out


def analyze(model, inputs_iter) -> Dict:
    """Accumulate the statistics over mapped inputs; returns the JSON-ready dict of buckets."""
    acc, level_names, num_images = None, None, 0
    for inputs in inputs_iter:
        a = assign_image(model, inputs)
        if acc is None:
            level_names = a.level_names
            acc = {b: _Accumulator(a.priors.num_levels) for b in BUCKETS}
        counts = bucket_counts(
            a.priors, a.result, a.gt, model.num_classes, original_areas(inputs, a.gt)
        )
        for name, values in counts.items():
            acc[name].add(*values)
        num_images += 1
    if acc is None:
        raise ToolError("the dataset has no images to analyze")
    return {
        "num_images": num_images,
        "levels": level_names,
        "buckets": {b: acc[b].summary(level_names) for b in BUCKETS},
    }


def _fmt(value, pattern="{:.2f}"):
    return "-" if value is None else pattern.format(value)


def markdown_table(stats: Dict) -> str:
    levels = stats["levels"]
    head = ["GT size", "#GT", "#pos", "pos/GT mean", "pos/GT min", "GT w/o pos"]
    head += [f"{n.upper()} %" for n in levels] + ["prior IoU"]
    lines = []
    for name in BUCKETS:
        b = stats["buckets"][name]
        row = [
            name,
            str(b["num_gt"]),
            str(b["num_pos"]),
            _fmt(b["pos_per_gt_mean"]),
            _fmt(b["pos_per_gt_min"], "{}"),
            _fmt(b["gt_without_pos_frac"], "{:.1%}"),
        ]
        row += [_fmt(b["pos_frac_per_level"][n], "{:.1%}") for n in levels]
        row.append(_fmt(b["pos_prior_iou_mean"], "{:.3f}"))
        lines.append(row)
    return pipe_table(head, lines)


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("analyze_assignment", __doc__)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig .py")
    parser.add_argument(
        "--dataset", default=None, help="dataset name (default: the config's test set)"
    )
    parser.add_argument(
        "--num-images", type=int, default=None, help="first N images (default: all)"
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="model weights (DetectionCheckpointer); default: random init",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE.json",
        help="JSON output (default <train.output_dir>/assignment_analysis.json)",
    )
    add_overrides_arg(parser)
    return parser


def run(args) -> Dict:
    from ..engine import cfg_get

    if args.num_images is not None and args.num_images <= 0:
        raise ToolError(f"--num-images must be positive, got {args.num_images}")
    cfg = load_tool_config(args.config_file, args.opts)
    output = args.output or os.path.join(
        cfg_get(cfg, "train.output_dir", "") or ".", "assignment_analysis.json"
    )
    dataset = resolve_dataset(cfg, args.dataset)
    model = load_model(cfg, args.checkpoint)
    stats = analyze(model, iter_mapped_inputs(cfg, dataset, args.num_images))
    aware = bool(getattr(model.assigner, "prediction_aware", False))
    stats = {
        "config_file": args.config_file,
        "overrides": list(args.opts or []),
        "dataset": dataset,
        "assigner": type(model.assigner).__name__,
        "prediction_aware": aware,
        "checkpoint": args.checkpoint,
        "size_buckets": {n: [lo, None if hi == float("inf") else hi] for n, lo, hi in SIZE_BUCKETS},
        "area_of": "GT box in the original image",
        **stats,
    }
    table = markdown_table(stats)
    print(
        f"\nLabel assignment of {stats['assigner']} ({os.path.basename(args.config_file)}) on "
        f"{stats['num_images']} images of {dataset}"
        + (
            " (predictions of the randomly initialized model)"
            if aware and not args.checkpoint
            else ""
        )
        + f":\n\n{table}\n"
    )
    write_json(output, stats)
    return stats


def main(argv=None) -> Dict:
    return run_cli(build_parser, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

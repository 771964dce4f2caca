"""Draw which priors a config's assigner makes positive, per pyramid level.

    python -m dense_assign.tools.visualize_assignment \
        --config-file configs/Synthetic-Detection/fcos_R_18_FPN.py \
        [--dataset NAME] [--num-images 4] [--checkpoint model_final.pth] \
        --output output/vis_assignment/fcos [key=value ...]

For each of the first ``--num-images`` images of the dataset (default: the config's test set),
mapped with the config's test resizing (``DatasetMapper(is_train=True)`` with the test
augmentations, so the boxes are the network input's), it writes ``<output>/NNN_<image>.png``: one
panel with every positive on every level, then one panel per FPN level (P3 ... P7), tiled. GT boxes
and their positive priors share a colour; marker size and opacity show the soft weight where the
method has one:

* SAPD: ``AssignResult.loss_weights`` (soft point weight x soft level weight), ignored points
  (level weight 0) as grey crosses;
* AutoAssign: every candidate (GT, point) pair, sized by its positive weight w+
  (``pairwise["w_plus"]``, relative to the GT's largest), and the learned center prior
  G(mu, sigma) of the GT's class as a dashed 1-sigma ellipse on each level;
* ATSS: the k candidates per level as hollow squares, the IoU threshold mean + std in the legend;
* max-IoU (RetinaNet): positive anchor boxes outlined, ignored anchors as grey crosses.

Prediction-aware assigners (AutoAssign, SAPD) use the model's predictions: with ``--checkpoint``
the trained weights', otherwise the randomly initialized model's, which the title says.
"""

import argparse
import logging
import math
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import torch

from . import (
    ToolError,
    add_overrides_arg,
    assign_image,
    iter_mapped_inputs,
    load_model,
    load_tool_config,
    resolve_dataset,
    run_cli,
    tool_parser,
)

logger = logging.getLogger("dense_assign.tools.visualize_assignment")

#: Size of one panel in pixels (width, height) at ``DPI``; panels are tiled ``COLUMNS`` wide.
PANEL_PX = (480, 400)
DPI = 100
COLUMNS = 3
#: At most this many GT boxes get a legend entry (all are drawn).
MAX_LEGEND_GT = 12


def figure_size_px(num_levels: int, columns: int = COLUMNS, panel_px=PANEL_PX):
    """(width, height) in pixels of the PNG for ``num_levels`` levels (plus the overview panel)."""
    panels = num_levels + 1
    cols = min(columns, panels)
    rows = math.ceil(panels / cols)
    return cols * panel_px[0], rows * panel_px[1]


def _gt_colors(num: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"] if num <= 10 else matplotlib.colormaps["tab20"]
    n = 10 if num <= 10 else 20
    return np.array([cmap(i % n) for i in range(max(num, 1))])


def _image_rgb(inputs: dict, image_format: str) -> np.ndarray:
    from detectron2.data.detection_utils import convert_image_to_rgb

    image = inputs["image"].permute(1, 2, 0).cpu().numpy()
    return convert_image_to_rgb(image, image_format).astype(np.uint8)


class _Overlay:
    """What is drawn for one image, per prior (positives) and per GT, independent of matplotlib."""

    def __init__(self, model, assignment):
        a = assignment
        self.priors = a.priors
        self.num_classes = model.num_classes
        self.gt_boxes = a.gt.gt_boxes.tensor.cpu()
        self.gt_classes = a.gt.gt_classes.cpu()
        res = a.result
        labels = res.labels.cpu()
        self.pos = (labels >= 0) & (labels != self.num_classes) & (res.matched_idxs.cpu() >= 0)
        self.ignored = labels == -1
        self.matched = res.matched_idxs.cpu()
        self.centers = a.priors.centers.cpu()
        self.boxes = a.priors.boxes.cpu()
        self.levels = a.priors.levels.cpu()
        self.stats = dict(res.stats)
        # (prior, gt, weight) triples to draw; weight in [0, 1] relative to the GT's largest
        self.kind = "hard"
        pts = self.pos.nonzero(as_tuple=True)[0]
        gts = self.matched[pts]
        weights = torch.ones(len(pts))
        assigner = model.assigner
        self.gt_notes: Dict[int, str] = {}
        self.candidates: Optional[torch.Tensor] = None  # ATSS (M, C) prior indices
        self.ellipses: List[tuple] = []  # AutoAssign (gt, level, cx, cy, rx, ry)
        if res.pairwise is not None and "w_plus" in res.pairwise:
            self.kind = "autoassign"
            pw = res.pairwise
            pts, gts = pw["point_idx"].cpu(), pw["gt_idx"].cpu()
            weights = pw["w_plus"].detach().float().cpu()
            self._ellipses(assigner)
        elif res.loss_weights is not None:
            self.kind = "soft"
            weights = res.loss_weights.detach().float().cpu()[pts]
        self.weighted = self.kind != "hard"
        if len(gts):
            top = torch.zeros(len(self.gt_boxes)).scatter_reduce(0, gts, weights, reduce="amax")
            weights = weights / top[gts].clamp(min=1e-12)
        self.pts, self.pt_gts, self.weights = pts, gts, weights.clamp(0, 1)
        self._atss(assigner)

    def _ellipses(self, assigner):
        mode = getattr(assigner, "center_prior_mode", "none")
        if mode == "none" or len(self.gt_boxes) == 0:
            return
        mu, sigma = assigner.mu.detach().float().cpu(), assigner.sigma.detach().float().cpu()
        rows = self.gt_classes if mode == "per_category" else torch.zeros_like(self.gt_classes)
        ctr = (self.gt_boxes[:, :2] + self.gt_boxes[:, 2:]) / 2
        for level, stride in enumerate(self.priors.level_strides):
            c = ctr + mu[rows] * stride
            r = sigma[rows].abs() * stride
            for g in range(len(self.gt_boxes)):
                self.ellipses.append((g, level, *c[g].tolist(), *r[g].tolist()))
        self.center_prior_note = f"center prior {mode}"

    def _atss(self, assigner):
        from ..assigners import ATSSAssigner
        from ..box_ops import pair_iou

        if not isinstance(assigner, ATSSAssigner) or len(self.gt_boxes) == 0:
            return
        priors = self.priors
        gt = self.gt_boxes.to(priors.centers.device)
        cand = assigner.candidates(priors, gt)  # (M, C), the rule's own candidate step
        m, c = cand.shape
        ious = pair_iou(
            assigner.matching_boxes(priors)[cand.reshape(-1)],
            gt[:, None].expand(m, c, 4).reshape(-1, 4),
        ).view(m, c)
        std = ious.std(dim=1) if c > 1 else torch.zeros(m, device=ious.device)
        thresh = ious.mean(dim=1) + torch.nan_to_num(std, nan=0.0)  # Algorithm 1, lines 7-9
        self.candidates = cand.cpu()
        for g, t in enumerate(thresh.cpu().tolist()):
            self.gt_notes[g] = f"IoU thr {t:.2f}"


def _marker_area(stride: float, scale: float, weight: torch.Tensor) -> np.ndarray:
    """scatter() marker areas (pt^2): a disc of ~0.6 stride on screen (2.5 to 24 pt wide),
    scaled by the weight."""
    diameter_pt = min(max(0.6 * stride * scale * 72.0 / DPI, 2.5), 24.0)
    return (diameter_pt**2 * (0.2 + 0.8 * weight)).numpy()


def draw(
    inputs: dict,
    assignment,
    model,
    image_format: str,
    title: str,
    class_names: Optional[List[str]] = None,
):
    """The figure of one image (matplotlib ``Figure``, Agg)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse, Rectangle

    ov = _Overlay(model, assignment)
    image = _image_rgb(inputs, image_format)
    h, w = image.shape[:2]
    num_levels = ov.priors.num_levels
    width_px, height_px = figure_size_px(num_levels)
    cols = min(COLUMNS, num_levels + 1)
    rows = math.ceil((num_levels + 1) / cols)
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.03, hspace=0.12)
    fig.suptitle(title, fontsize=8)
    colors = _gt_colors(len(ov.gt_boxes))
    # display pixels per image pixel, for marker sizes
    scale = min((width_px / cols) / w, (height_px * 0.85 / rows) / h)

    for panel in range(num_levels + 1):
        ax = fig.add_subplot(rows, cols, panel + 1)
        ax.imshow(image, alpha=0.75)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        level = panel - 1  # -1: all levels
        for g, box in enumerate(ov.gt_boxes.tolist()):
            ax.add_patch(
                Rectangle(
                    (box[0], box[1]),
                    box[2] - box[0],
                    box[3] - box[1],
                    fill=False,
                    edgecolor=colors[g],
                    linewidth=1.2,
                )
            )
        on_level = torch.ones(len(ov.pts), dtype=torch.bool)
        if level >= 0:
            on_level = ov.levels[ov.pts] == level
        pts, gts, wts = ov.pts[on_level], ov.pt_gts[on_level], ov.weights[on_level]
        strides = ov.priors.strides.cpu()
        if ov.candidates is not None:
            cand = ov.candidates.reshape(-1)
            cand_gt = torch.arange(len(ov.gt_boxes))[:, None].expand_as(ov.candidates).reshape(-1)
            if level >= 0:
                keep = ov.levels[cand] == level
                cand, cand_gt = cand[keep], cand_gt[keep]
            if len(cand):
                xy = ov.centers[cand]
                ax.scatter(
                    xy[:, 0],
                    xy[:, 1],
                    s=_marker_area(float(strides[cand].min()), scale, torch.ones(1))[0] * 1.6,
                    facecolors="none",
                    edgecolors=colors[cand_gt.numpy()],
                    marker="s",
                    linewidths=0.6,
                )
        if ov.priors.num_anchors > 1 and len(pts) and level >= 0:
            for p, g in zip(pts.tolist()[:400], gts.tolist()[:400]):
                b = ov.boxes[p].tolist()
                ax.add_patch(
                    Rectangle(
                        (b[0], b[1]),
                        b[2] - b[0],
                        b[3] - b[1],
                        fill=False,
                        edgecolor=colors[g],
                        linewidth=0.4,
                        linestyle=":",
                    )
                )
        if len(pts):
            xy = ov.centers[pts]
            rgba = colors[gts.numpy()].copy()
            rgba[:, 3] = (0.35 + 0.65 * wts).numpy() if ov.weighted else 0.9
            wt = wts if ov.weighted else torch.ones(len(pts))
            sizes = np.concatenate(
                [_marker_area(float(strides[p]), scale, x[None]) for p, x in zip(pts, wt)]
            )
            ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=rgba, edgecolors="white", linewidths=0.3)
        ign = ov.ignored.clone()
        if level >= 0:
            ign &= ov.levels == level
        num_ignored = int(ign.sum())
        if num_ignored:
            xy = ov.centers[ign]
            ax.scatter(xy[:, 0], xy[:, 1], s=6, c="0.55", marker="x", linewidths=0.5)
        for g, lvl, cx, cy, rx, ry in ov.ellipses:
            if lvl == level:
                ax.add_patch(
                    Ellipse(
                        (cx, cy),
                        2 * rx,
                        2 * ry,
                        fill=False,
                        edgecolor=colors[g],
                        linestyle="--",
                        linewidth=0.8,
                    )
                )
        num_pos = int((ov.pos & (ov.levels == level)).sum()) if level >= 0 else int(ov.pos.sum())
        extra = f", {num_ignored} ignored" if num_ignored else ""
        if ov.kind == "autoassign":
            extra += f", {len(pts)} candidate pairs"
        if level < 0:
            name = "all levels"
        else:
            name = (
                f"{assignment.level_names[level].upper()} (stride {ov.priors.level_strides[level]})"
            )
        ax.set_title(f"{name}: {num_pos} positives{extra}", fontsize=8)

        if level < 0:  # legend on the overview panel
            handles = []
            for g in range(min(len(ov.gt_boxes), MAX_LEGEND_GT)):
                cls = int(ov.gt_classes[g])
                cname = class_names[cls] if class_names and cls < len(class_names) else str(cls)
                npos = int((ov.matched[ov.pos] == g).sum())
                note = f", {ov.gt_notes[g]}" if g in ov.gt_notes else ""
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=colors[g],
                        marker="o",
                        linestyle="-",
                        markersize=4,
                        label=f"GT {g} {cname}: {npos} pos{note}",
                    )
                )
            if len(ov.gt_boxes) > MAX_LEGEND_GT:
                handles.append(Line2D([], [], color="none", label=f"... {len(ov.gt_boxes)} GT"))
            what = {
                "hard": "positive prior",
                "soft": "positive (size/alpha = weight)",
                "autoassign": "candidate (size/alpha = w+ / GT max)",
            }[ov.kind]
            handles.append(
                Line2D([], [], color="k", marker="o", linestyle="none", markersize=4, label=what)
            )
            if ov.candidates is not None:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="k",
                        marker="s",
                        linestyle="none",
                        markerfacecolor="none",
                        markersize=4,
                        label="ATSS candidate",
                    )
                )
            if ov.ellipses:
                handles.append(
                    Line2D([], [], color="k", linestyle="--", label="center prior 1 sigma")
                )
            if int(ov.ignored.sum()):
                handles.append(
                    Line2D([], [], color="0.55", marker="x", linestyle="none", label="ignored")
                )
            ax.legend(handles=handles, loc="best", fontsize=5.5, framealpha=0.75)
    return fig


def _num_positives(result, num_classes: int) -> int:
    return int(result.pos_mask(num_classes).sum())


def _title(args, model, inputs, assignment) -> str:
    aware = getattr(model.assigner, "prediction_aware", False)
    if not aware:
        preds = "predictions not used (hard assigner)"
    elif args.checkpoint:
        preds = f"predictions of {os.path.basename(args.checkpoint)}"
    else:
        preds = "predictions of the RANDOMLY INITIALIZED model (no --checkpoint)"
    stats = assignment.result.stats
    phase = f", SAPD phase {int(stats['sapd_phase'])}" if "sapd_phase" in stats else ""
    num_pos = _num_positives(assignment.result, model.num_classes)
    h, w = assignment.image_size
    return (
        f"{os.path.basename(inputs['file_name'])} ({w}x{h} input) | "
        f"{type(model.assigner).__name__} of {os.path.basename(args.config_file)}{phase}\n"
        f"{len(assignment.gt)} GT, {num_pos} positives | {preds}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("visualize_assignment", __doc__)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig .py")
    parser.add_argument(
        "--dataset", default=None, help="dataset name (default: the config's test set)"
    )
    parser.add_argument("--num-images", type=int, default=4, help="images to draw (default 4)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="model weights (DetectionCheckpointer); default: random init",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the PNG files")
    add_overrides_arg(parser)
    return parser


def run(args) -> List[str]:
    """Write the images; returns their paths."""
    from detectron2.data import MetadataCatalog

    from ..engine import cfg_get

    if args.num_images <= 0:
        raise ToolError(f"--num-images must be positive, got {args.num_images}")
    cfg = load_tool_config(args.config_file, args.opts)
    dataset = resolve_dataset(cfg, args.dataset)
    model = load_model(cfg, args.checkpoint)
    image_format = cfg_get(cfg, "dataloader.test.mapper.image_format", None) or "BGR"
    class_names = MetadataCatalog.get(dataset).get("thing_classes", None)
    os.makedirs(args.output, exist_ok=True)
    written = []
    for index, inputs in enumerate(iter_mapped_inputs(cfg, dataset, args.num_images)):
        assignment = assign_image(model, inputs)
        fig = draw(
            inputs,
            assignment,
            model,
            image_format,
            _title(args, model, inputs, assignment),
            class_names,
        )
        stem = os.path.splitext(os.path.basename(inputs["file_name"]))[0]
        path = os.path.join(args.output, f"{index:03d}_{stem}.png")
        fig.savefig(path, dpi=DPI)
        written.append(path)
        num_pos = _num_positives(assignment.result, model.num_classes)
        logger.info(f"{path}: {len(assignment.gt)} GT, {num_pos} positives")
    logger.info(f"Wrote {len(written)} images of {dataset} to {args.output}")
    return written


def main(argv=None) -> List[str]:
    return run_cli(build_parser, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

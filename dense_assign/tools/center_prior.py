"""Draw the center priors an AutoAssign model has learned, one panel per class (AutoAssign Fig. 5).

    python -m dense_assign.tools.center_prior --config-file CFG --checkpoint MODEL.pth \
        --output center_prior.png [--extent 3] [key=value ...]

AutoAssign weighs the points inside a GT box by a Gaussian of their offset from the box centre,
measured in strides of their level, G(d) = prod over x, y of exp(-(d - mu)^2 / (2 sigma^2)), with a
learnable (mu, sigma) per class (``center_prior="per_category"``), one shared pair (``"shared"``)
or the fixed (0, 1) (``"fixed"``). This tool reads mu and sigma from the checkpoint (through the
config's model, so the rows follow its ``num_classes``) and draws G over offsets in
[-extent, extent] strides on both axes, every class at the same scale as in the paper's figure: the
cross marks mu (where the prior peaks), the dashed ellipse is 1 sigma, the dotted square is the
unit cell of one stride. The class names come from the metadata of the config's first training
dataset. It also writes ``<output>.json`` (mu, sigma per class) and logs the same as a table.
"""

import logging
import math
import os
from typing import Dict, List

import torch

from . import (
    ToolError,
    add_overrides_arg,
    load_model,
    load_tool_config,
    run_cli,
    tool_parser,
    write_json,
)

logger = logging.getLogger("dense_assign.tools.center_prior")


def learned_center_priors(assigner) -> Dict[str, torch.Tensor]:
    """``{"mu": (rows, 2), "sigma": (rows, 2)}`` of an AutoAssign assigner (x then y, in strides);
    raises :class:`ToolError` for an assigner without a center prior."""
    mode = getattr(assigner, "center_prior_mode", None)
    if mode is None or not hasattr(assigner, "mu"):
        raise ToolError(
            f"the config's assigner ({type(assigner).__name__}) has no learned center prior: "
            "use an AutoAssign config"
        )
    if mode == "none":
        raise ToolError("the config's assigner has center_prior='none': there is nothing to draw")
    return {
        "mu": assigner.mu.detach().cpu().float(),
        "sigma": assigner.sigma.detach().cpu().float(),
    }


def prior_map(
    mu: torch.Tensor, sigma: torch.Tensor, extent: float, size: int = 121
) -> torch.Tensor:
    """G on a (size, size) grid of offsets in [-extent, extent] strides (rows: y, columns: x)."""
    t = torch.linspace(-extent, extent, size)
    gx = torch.exp(-((t - mu[0]) ** 2) / (2 * sigma[0] ** 2))
    gy = torch.exp(-((t - mu[1]) ** 2) / (2 * sigma[1] ** 2))
    return gy[:, None] * gx[None, :]


def class_names_of(cfg, rows: int) -> List[str]:
    from detectron2.data import MetadataCatalog

    from ..engine import dataset_names

    # registration sets thing_classes (COCO, VOC, the synthetic sets): no need to load the data
    names = dataset_names(cfg, "dataloader.train.dataset.names")
    classes = []
    if names:
        classes = list(MetadataCatalog.get(names[0]).get("thing_classes", []) or [])
    if rows == 1:
        return ["all classes (shared)"]
    if len(classes) != rows:
        classes = [f"class {i}" for i in range(rows)]
    return classes


def draw_center_priors(params, names, extent: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse, Rectangle

    rows = params["mu"].shape[0]
    cols = min(rows, 4)
    lines = math.ceil(rows / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(3.3 * cols, 3.9 * lines), squeeze=False)
    for k in range(lines * cols):
        ax = axes[k // cols][k % cols]
        if k >= rows:
            ax.axis("off")
            continue
        mu, sigma = params["mu"][k], params["sigma"][k].abs()
        g = prior_map(mu, sigma, extent)
        ax.imshow(
            g.numpy(), extent=(-extent, extent, extent, -extent), cmap="magma", vmin=0, vmax=1
        )
        ax.add_patch(
            Ellipse(
                (float(mu[0]), float(mu[1])),
                2 * float(sigma[0]),
                2 * float(sigma[1]),
                fill=False,
                linestyle="--",
                color="cyan",
                linewidth=1.2,
            )
        )
        ax.add_patch(
            Rectangle((-0.5, -0.5), 1, 1, fill=False, linestyle=":", color="white", linewidth=0.8)
        )
        ax.plot([float(mu[0])], [float(mu[1])], marker="+", color="cyan", markersize=10)
        ax.set_title(
            f"{names[k]}\nmu=({mu[0]:+.2f}, {mu[1]:+.2f}) sigma=({sigma[0]:.2f}, {sigma[1]:.2f})",
            fontsize=9,
        )
        ax.set_xlabel("x offset / stride", fontsize=8)
        ax.set_ylabel("y offset / stride (down)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser():
    parser = tool_parser("center_prior", __doc__)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="an AutoAssign config")
    parser.add_argument(
        "--checkpoint", default="", help="trained weights (default: the config's initial mu, sigma)"
    )
    parser.add_argument("--output", required=True, help="the PNG to write (and <output>.json)")
    parser.add_argument("--extent", type=float, default=3.0, help="half-width of the plot, strides")
    add_overrides_arg(parser)
    return parser


def run(args) -> str:
    if args.extent <= 0:
        raise ToolError(f"--extent must be positive, got {args.extent}")
    cfg = load_tool_config(args.config_file, args.opts)
    model = load_model(cfg, args.checkpoint or None)
    params = learned_center_priors(model.assigner)
    names = class_names_of(cfg, params["mu"].shape[0])
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    # the run folder and file name of the checkpoint, enough to tell runs apart
    source = (
        os.path.join(*os.path.normpath(args.checkpoint).split(os.sep)[-2:])
        if args.checkpoint
        else "initial values (no --checkpoint)"
    )
    title = f"AutoAssign center priors ({model.assigner.center_prior_mode}) - {source}"
    draw_center_priors(params, names, args.extent, args.output, title)
    table = [
        {
            "class": names[k],
            "mu": [round(float(v), 4) for v in params["mu"][k]],
            "sigma": [round(float(v), 4) for v in params["sigma"][k].abs()],
        }
        for k in range(len(names))
    ]
    write_json(
        os.path.splitext(args.output)[0] + ".json",
        {"checkpoint": args.checkpoint, "config": args.config_file, "priors": table},
    )
    lines = ["| class | mu x | mu y | sigma x | sigma y |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['class']} | {r['mu'][0]:+.3f} | {r['mu'][1]:+.3f} | {r['sigma'][0]:.3f} | "
        f"{r['sigma'][1]:.3f} |"
        for r in table
    ]
    logger.info("Learned center priors (offsets in strides):\n" + "\n".join(lines))
    logger.info(f"Wrote {args.output}")
    return args.output


def main(argv=None):
    return run_cli(build_parser, run, argv)


if __name__ == "__main__":
    main()

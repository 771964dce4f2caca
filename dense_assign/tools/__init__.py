"""Evidence tools, each run as ``python -m dense_assign.tools.<name>`` (see ``README.md`` here):

    python -m dense_assign.tools.visualize_assignment --config-file CFG --output DIR
    python -m dense_assign.tools.analyze_assignment --config-file CFG
    python -m dense_assign.tools.benchmark --output benchmark.json
    python -m dense_assign.tools.compare --output output/compare
    python -m dense_assign.tools.center_prior --config-file CFG --checkpoint PTH --output PNG

This module holds what several tools share: loading a config and a model through
:mod:`dense_assign.engine`, mapping dataset images as the network sees them, and running a
detector's own label assignment (:meth:`OneStageDetector.assign`) on one image.
"""

import argparse
import contextlib
import copy
import logging
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
from omegaconf import OmegaConf
from tabulate import tabulate

__all__ = [
    "ToolError",
    "setup_tool_logging",
    "load_tool_config",
    "resolve_dataset",
    "build_assignment_mapper",
    "iter_mapped_inputs",
    "load_model",
    "ImageAssignment",
    "assign_image",
    "priors_for_image_size",
    "config_file_path",
    "write_json",
    "pipe_table",
]

logger = logging.getLogger(__name__)


class ToolError(ValueError):
    """A bad command-line argument or input file of a tool (reported in one line)."""


def tool_parser(tool: str, doc: str) -> "argparse.ArgumentParser":
    """The parser of ``python -m dense_assign.tools.<tool>``: its module docstring's first
    paragraph as description, the rest (the commands) as epilog."""
    return argparse.ArgumentParser(
        prog=f"python -m dense_assign.tools.{tool}",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_overrides_arg(parser, help: str = "config overrides, as train_net.py") -> None:
    """The trailing ``key=value`` config overrides (``opts``), as train_net.py takes them."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="key=value", help=help)


def run_cli(build_parser, run, argv=None, log_dir: Optional[str] = None):
    """The command-line entry of a tool: parse ``argv``, set up logging, run; a bad config, key
    or flag (ConfigError / ToolError) ends with one error line naming it (exit code 2)."""
    from ..engine import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_tool_logging(log_dir)
    try:
        return run(args)
    except (ConfigError, ToolError) as e:
        parser.error(str(e))


def pipe_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of the tools' reports: ``tabulate``'s GitHub format, the cells as given
    (already formatted: no number parsing), columns padded to their widest cell."""
    return tabulate(rows, headers=head, tablefmt="github", disable_numparse=True)


def config_file_path(name: str, flag: str) -> str:
    """``name`` if it is a file, else the packaged config ``configs/<name>``; raises
    :class:`ToolError` naming the command-line ``flag`` that gave it when it is neither."""
    if os.path.isfile(name):
        return name
    from ..model_zoo import get_config_file

    try:
        return get_config_file(name)
    except FileNotFoundError as e:
        raise ToolError(f"{flag}: {name} is neither a file nor a packaged config ({e})") from e


def write_json(path: str, data) -> str:
    """Write ``data`` as indented JSON (creating the folder) and log where."""
    import json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    logging.getLogger("dense_assign.tools").info(f"Wrote {path}")
    return path


def setup_tool_logging(output_dir: Optional[str] = None) -> logging.Logger:
    """detectron2-style loggers for ``dense_assign`` and ``detectron2`` (console, and
    ``<output_dir>/log.txt`` when given). Returns the tools' logger."""
    from detectron2.utils.logger import setup_logger

    setup_logger(output_dir, name="detectron2", abbrev_name="d2")
    setup_logger(output_dir, name="dense_assign")
    return logging.getLogger("dense_assign.tools")


def load_tool_config(config_file: str, overrides: Optional[Sequence[str]] = None):
    """``dense_assign.engine.load_config`` after registering the project's components; raises
    :class:`dense_assign.engine.ConfigError` naming the file or the key at fault."""
    from ..engine import import_project_modules, load_config

    import_project_modules()
    return load_config(config_file, list(overrides or []))


def resolve_dataset(cfg, name: Optional[str] = None) -> str:
    """The dataset a tool reads: ``name``, or the config's first test dataset. Generates it first
    when it is one of the project's synthetic datasets (``dense_assign.engine.prepare_datasets``,
    for this dataset only). Raises :class:`ToolError` for an unregistered name."""
    from detectron2.data import DatasetCatalog

    from ..engine import dataset_names, prepare_datasets

    if not name:
        names = dataset_names(cfg, "dataloader.test.dataset.names")
        if not names:
            raise ToolError("the config has no dataloader.test.dataset.names: pass --dataset NAME")
        name = names[0]
    if name not in DatasetCatalog.list():
        raise ToolError(
            f"--dataset {name!r} is not a registered dataset; registered: "
            f"{', '.join(sorted(DatasetCatalog.list()))}"
        )
    prepare_datasets(OmegaConf.create({"dataloader": {"test": {"dataset": {"names": name}}}}))
    return name


def build_assignment_mapper(cfg):
    """A ``DatasetMapper(is_train=True)`` with the config's *test* augmentations and image format:
    deterministic resizing (so the boxes match the network input of evaluation) and GT instances
    kept. Raises :class:`ToolError` when the test mapper has no ``augmentations``."""
    from detectron2.config import instantiate
    from detectron2.data import DatasetMapper

    from ..engine import cfg_get

    augs = cfg_get(cfg, "dataloader.test.mapper.augmentations", None)
    if augs is None:
        raise ToolError(
            "the config's dataloader.test.mapper has no 'augmentations' (not a DatasetMapper): "
            "the tools need the test-time resizing to map images as the network sees them"
        )
    fmt = cfg_get(cfg, "dataloader.test.mapper.image_format", None) or cfg_get(
        cfg, "dataloader.train.mapper.image_format", "BGR"
    )
    return DatasetMapper(is_train=True, augmentations=list(instantiate(augs)), image_format=fmt)


def iter_mapped_inputs(cfg, dataset: str, num_images: Optional[int] = None) -> Iterator[dict]:
    """The first ``num_images`` (None: all) images of ``dataset`` with their GT instances, mapped
    by :func:`build_assignment_mapper`. Images whose annotations are all crowd keep an empty
    ``instances``."""
    from detectron2.data import DatasetCatalog

    mapper = build_assignment_mapper(cfg)
    dicts = DatasetCatalog.get(dataset)
    if num_images is not None:
        dicts = dicts[: max(0, int(num_images))]
    for d in dicts:
        item = mapper(copy.deepcopy(d))
        if item is not None:
            yield item


@contextlib.contextmanager
def _quiet(logger_name: str, level: int = logging.WARNING):
    log = logging.getLogger(logger_name)
    old = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(old)


def load_model(cfg, checkpoint: Optional[str] = None) -> torch.nn.Module:
    """``dense_assign.engine.build_model`` (without logging the architecture), in eval mode, with
    the weights of ``checkpoint`` when given (``DetectionCheckpointer``). Raises
    :class:`ToolError` for a missing checkpoint file."""
    from detectron2.checkpoint import DetectionCheckpointer

    from ..engine import build_model

    if checkpoint and not os.path.isfile(checkpoint):
        raise ToolError(f"--checkpoint {checkpoint}: file not found")
    with _quiet("dense_assign.engine.trainer"):
        model = build_model(cfg)
    if checkpoint:
        DetectionCheckpointer(model).load(checkpoint)
        logger.info(f"Loaded weights from {checkpoint}")
    model.eval()
    return model


@dataclass
class ImageAssignment:
    """The label assignment of one image, as the detector computes it for its losses."""

    priors: object  # dense_assign.structures.Priors
    result: object  # dense_assign.structures.AssignResult
    gt: object  # Instances, on the model's device
    predictions: object  # DensePredictions of the image (None for a hard assigner)
    image_size: tuple  # (H, W) of the network input before padding
    level_names: List[str]


@torch.no_grad()
def assign_image(model, inputs: dict) -> ImageAssignment:
    """Run ``model``'s backbone and head on one mapped input and its own assigner
    (:meth:`OneStageDetector.assign`), exactly as in training, without the losses. Prediction-aware
    assigners see the model's predictions (of its current weights)."""
    if "instances" not in inputs:
        raise ToolError("the mapped input has no GT 'instances' (needs is_train=True mapping)")
    images = model.preprocess_image([inputs])
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    predictions = model.head(features)
    preds = model._flatten_predictions(features, predictions)
    priors = model.build_priors(features)
    gt = inputs["instances"].to(model.device)
    result = model.assign(priors, preds, [gt], images.image_sizes)[0]
    aware = getattr(model.assigner, "prediction_aware", False)
    return ImageAssignment(
        priors=priors,
        result=result,
        gt=gt,
        predictions=preds.image(0) if aware else None,
        image_size=tuple(images.image_sizes[0]),
        level_names=list(model.head_in_features),
    )


def priors_for_image_size(prior_generator, image_size, size_divisibility: int = 32, device="cpu"):
    """The priors of an ``image_size`` (H, W) network input padded to ``size_divisibility``, built
    by :meth:`OneStageDetector.build_priors` from empty feature maps of ceil(H / stride) cells (the
    feature sizes of detectron2's ResNet-FPN P3-P7)."""
    from ..meta_arch import OneStageDetector

    h, w = image_size
    if size_divisibility > 1:
        h = -(-h // size_divisibility) * size_divisibility
        w = -(-w // size_divisibility) * size_divisibility
    feats = [
        torch.zeros(1, 1, -(-h // int(s)), -(-w // int(s)), device=device)
        for s in prior_generator.strides
    ]

    class _Shim:  # build_priors only reads the generator
        pass

    shim = _Shim()
    # detectron2's anchor generators build the grid on the device of their cell-anchor buffers,
    # not of the features: the generator goes to ``device`` too
    shim.prior_generator = prior_generator.to(device)
    return OneStageDetector.build_priors(shim, feats)

"""Evaluation for ``train_net.py``: the configured evaluator on the test loader, results as JSON."""

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Dict, Optional

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from omegaconf import ListConfig

from .config import cfg_get
from .data import build_test_loader

__all__ = [
    "FINAL_RESULTS_FILE",
    "EVAL_RESULTS_FILE",
    "build_evaluator",
    "do_test",
    "results_to_json",
    "write_results_json",
    "results_path",
]

logger = logging.getLogger(__name__)

#: Written into ``train.output_dir`` after the final evaluation of a training run.
FINAL_RESULTS_FILE = "final_results.json"
#: Written into ``train.output_dir`` by ``--eval-only``.
EVAL_RESULTS_FILE = "eval_results.json"


def build_evaluator(cfg):
    """Instantiate ``cfg.dataloader.evaluator``; a list of evaluators becomes one
    ``DatasetEvaluators``. Returns None when the config has no evaluator."""
    evaluator_cfg = cfg_get(cfg, "dataloader.evaluator", None)
    if evaluator_cfg is None:
        return None
    evaluator = instantiate(evaluator_cfg)
    if isinstance(evaluator, (list, tuple, ListConfig)):
        evaluator = DatasetEvaluators(list(evaluator))
    return evaluator


def do_test(cfg, model) -> Dict[str, Any]:
    """Run the model on ``cfg.dataloader.test`` (its dataset checked, ground-truth boxes
    included, see :func:`dense_assign.engine.data.build_test_loader`) with the configured
    evaluator (in all processes), log the results with ``print_csv_format`` and return them
    (empty on non-main processes, or when the config has no evaluator)."""
    evaluator = build_evaluator(cfg)
    if evaluator is None:
        logger.warning("The config has no dataloader.evaluator: skipping evaluation")
        return {}
    num_classes = getattr(getattr(model, "module", model), "num_classes", None)
    loader = build_test_loader(cfg, num_classes, evaluation=True)
    results = inference_on_dataset(model, loader, evaluator)
    if results is None:
        results = {}
    if comm.is_main_process() and results:
        print_csv_format(results)
    return results


def _plain(value):
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, (np.generic, np.ndarray)) and np.size(value) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (e.g. AP of a class without ground truth) -> JSON null
    return value


def results_to_json(results) -> Dict[str, Any]:
    """The nested results dict as plain JSON values; NaN/inf become ``None`` so that the file is
    strict JSON (an evaluator reports NaN for a class without ground truth)."""
    return _plain(results)


def write_results_json(results, path: str) -> str:
    """Write evaluation results (see :func:`results_to_json`) to ``path``; returns ``path``."""
    PathManager.mkdirs(os.path.dirname(path) or ".")
    with PathManager.open(path, "w") as f:
        json.dump(results_to_json(results), f, indent=2)
        f.write("\n")
    return path


def results_path(cfg, file_name: str) -> Optional[str]:
    """``<train.output_dir>/<file_name>``, or None without an output directory."""
    output_dir = cfg_get(cfg, "train.output_dir", "")
    return os.path.join(output_dir, file_name) if output_dir else None

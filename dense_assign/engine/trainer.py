"""Training and ``--eval-only`` for a LazyConfig (the standard layout of detectron2's
``configs/common/train.py``), in the process that calls them (one of ``launch``'s workers)."""

import logging
from typing import Any, Callable, Dict, List

import torch
from omegaconf import OmegaConf

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm

from .config import OPTIONAL_KEYS, cfg_get, device_of
from .evaluation import (
    EVAL_RESULTS_FILE,
    FINAL_RESULTS_FILE,
    do_test,
    results_path,
    write_results_json,
)
from .visualization import visualize_predictions

__all__ = [
    "ddp_kwargs",
    "build_trainer",
    "build_hooks",
    "build_model",
    "do_train",
    "do_eval_only",
    "maybe_visualize",
]

logger = logging.getLogger(__name__)


def _as_dict(node) -> Dict[str, Any]:
    if node is None:
        return {}
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def ddp_kwargs(cfg) -> Dict[str, Any]:
    """``train.ddp`` as keyword arguments of ``create_ddp_model``. On CPU ``device_ids`` must be
    None (``create_ddp_model`` would otherwise pass the local rank as a GPU id): it is set here,
    so that a CPU run needs no ``train.ddp.device_ids=null`` override."""
    kwargs = _as_dict(cfg_get(cfg, "train.ddp", None))
    if device_of(cfg).type == "cpu" and kwargs.get("device_ids", "<unset>") is not None:
        if comm.get_world_size() > 1:
            was = kwargs.get("device_ids", "<unset>")
            logger.info(
                f"train.device=cpu: DistributedDataParallel gets device_ids=None "
                f"(train.ddp.device_ids was {was})"
            )
        kwargs["device_ids"] = None
    return kwargs


def build_trainer(cfg, model, data_loader, optimizer) -> SimpleTrainer:
    """``AMPTrainer`` when ``train.amp.enabled`` and the model runs on CUDA; otherwise
    ``SimpleTrainer`` (with a warning when AMP was asked for on a device without CUDA:
    detectron2's ``AMPTrainer`` supports CUDA only)."""
    if bool(cfg_get(cfg, "train.amp.enabled", False)):
        device = device_of(cfg)
        if device.type == "cuda" and torch.cuda.is_available():
            return AMPTrainer(model, data_loader, optimizer)
        logger.warning(
            f"train.amp.enabled=True, but train.device={device} has no CUDA: mixed precision "
            "training (AMPTrainer) needs a GPU. Training in full precision with SimpleTrainer."
        )
    return SimpleTrainer(model, data_loader, optimizer)


def build_hooks(cfg, checkpointer, eval_function: Callable[[], Dict]) -> List[Any]:
    """The training hooks, in this order: iteration timer, LR schedule (``cfg.lr_multiplier``),
    periodic checkpoints (``train.checkpointer``; main process), evaluation every
    ``train.eval_period`` iterations and after the last one, and detectron2's default writers
    (console, ``metrics.json``, TensorBoard) every ``train.log_period`` iterations (main process).
    ``None`` entries (other processes) are dropped by ``trainer.register_hooks``."""
    main = comm.is_main_process()
    return [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **_as_dict(cfg.train.checkpointer))
        if main
        else None,
        hooks.EvalHook(cfg_get(cfg, "train.eval_period", 0), eval_function),
        hooks.PeriodicWriter(
            default_writers(cfg.train.output_dir, cfg.train.max_iter),
            period=cfg_get(cfg, "train.log_period", 20),
        )
        if main
        else None,
    ]


def build_model(cfg) -> torch.nn.Module:
    """Instantiate ``cfg.model`` on ``train.device`` (not wrapped for DDP)."""
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(device_of(cfg))
    return model


def maybe_visualize(cfg, model) -> List[str]:
    """Draw ``train.vis_predictions`` test images (default 0: none) on the main process."""
    key = "train.vis_predictions"
    num = int(cfg_get(cfg, key, OPTIONAL_KEYS[key]) or 0)
    written: List[str] = []
    if num > 0 and comm.is_main_process():
        written = visualize_predictions(cfg, model, num)
    comm.synchronize()
    return written


def do_train(cfg, resume: bool = False) -> Dict[str, Any]:
    """Train ``cfg.model`` as configured; returns the results of the final evaluation.

    With ``resume``, continues from the last checkpoint of ``train.output_dir`` (iteration and
    optimizer state included) when there is one; otherwise starts at iteration 0 from
    ``train.init_checkpoint`` (empty: from scratch). After the final evaluation, the main process
    writes the results to ``<train.output_dir>/final_results.json`` and draws
    ``train.vis_predictions`` images.
    """
    model = build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **ddp_kwargs(cfg))
    trainer = build_trainer(cfg, model, train_loader, optimizer)
    # The trainer's state holds the iteration, the optimizer and the hooks' states.
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)

    latest: Dict[str, Any] = {}

    def evaluate():
        results = do_test(cfg, model)
        latest["results"] = results
        return results

    trainer.register_hooks(build_hooks(cfg, checkpointer, evaluate))

    init_checkpoint = cfg_get(cfg, "train.init_checkpoint", "") or ""
    checkpointer.resume_or_load(init_checkpoint, resume=resume)
    if resume and checkpointer.has_checkpoint():
        # A checkpoint stores the iteration that just finished.
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)

    results = latest.get("results") or {}
    if comm.is_main_process():
        path = results_path(cfg, FINAL_RESULTS_FILE)
        if results and path:
            # do_test has logged them with print_csv_format (the final evaluation's are last).
            write_results_json(results, path)
            logger.info(f"Final evaluation results (after {trainer.iter} iterations) -> {path}")
        elif not results:
            logger.warning("No final evaluation results (no evaluator, or it returned nothing)")
    maybe_visualize(cfg, model)
    return results


def do_eval_only(cfg, resume: bool = False) -> Dict[str, Any]:
    """Evaluate a checkpoint: the last one of ``train.output_dir`` with ``resume`` (when there is
    one), otherwise ``train.init_checkpoint``. The main process writes the results to
    ``<train.output_dir>/eval_results.json`` and draws ``train.vis_predictions`` images."""
    model = create_ddp_model(build_model(cfg), **ddp_kwargs(cfg))
    checkpointer = DetectionCheckpointer(model, cfg_get(cfg, "train.output_dir", "") or "")
    init_checkpoint = cfg_get(cfg, "train.init_checkpoint", "") or ""
    if resume and checkpointer.has_checkpoint():
        logger.info(f"Evaluating the last checkpoint {checkpointer.get_checkpoint_file()}")
    elif init_checkpoint:
        logger.info(f"Evaluating train.init_checkpoint={init_checkpoint}")
    else:
        logger.warning(
            "--eval-only without a checkpoint (train.init_checkpoint is empty"
            + (" and the output directory has none" if resume else "")
            + "): evaluating randomly initialized weights"
        )
    checkpointer.resume_or_load(init_checkpoint, resume=resume)
    results = do_test(cfg, model)
    path = results_path(cfg, EVAL_RESULTS_FILE)
    if comm.is_main_process() and results and path:
        write_results_json(results, path)
        logger.info(f"Evaluation results -> {path}")
    maybe_visualize(cfg, model)
    return results

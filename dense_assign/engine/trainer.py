"""Training and ``--eval-only`` for a LazyConfig (the standard layout of detectron2's
``configs/common/train.py``), in the process that calls them (one of ``launch``'s workers)."""

import logging
import os
from typing import Any, Callable, Dict, List, Optional

import torch
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from omegaconf import OmegaConf

from .checkpoint import (
    AtomicCheckpointer,
    RetainingPeriodicCheckpointer,
    check_checkpoint_fits,
    checkpoint_mismatch,
)
from .config import cfg_get, cfg_option, clip_grad_options, device_of, instantiate_checked
from .data import DeterministicTrainLoader, build_train_loader, check_test_dataset
from .evaluation import (
    EVAL_RESULTS_FILE,
    FINAL_RESULTS_FILE,
    do_test,
    results_path,
    write_results_json,
)
from .stability import FiniteLossCheck, add_gradient_clipping
from .visualization import visualize_predictions
from .writers import (
    EvalTimer,
    RecentETAPrinter,
    ResumableJSONWriter,
    ResumableTensorboardXWriter,
    resume_writers,
)

__all__ = [
    "ddp_kwargs",
    "build_trainer",
    "build_hooks",
    "build_model",
    "build_optimizer",
    "build_writers",
    "do_train",
    "do_eval_only",
    "maybe_visualize",
    "Trainer",
    "AMPTrainerChecked",
    "TRAIN_DATA_STATE",
]

#: Key of the training data stream's state (its seed) in the checkpoints.
TRAIN_DATA_STATE = "train_data"

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


class Trainer(FiniteLossCheck, SimpleTrainer):
    """detectron2's ``SimpleTrainer`` that stops on a non-finite loss naming it
    (:class:`~dense_assign.engine.stability.FiniteLossCheck`)."""


class AMPTrainerChecked(FiniteLossCheck, AMPTrainer):
    """detectron2's ``AMPTrainer`` that stops on a non-finite loss naming it."""


def build_trainer(cfg, model, data_loader, optimizer) -> SimpleTrainer:
    """:class:`AMPTrainerChecked` when ``train.amp.enabled`` and the model runs on CUDA;
    otherwise :class:`Trainer` (with a warning when AMP was asked for on a device without CUDA:
    detectron2's ``AMPTrainer`` supports CUDA only). Both stop on a non-finite loss."""
    if bool(cfg_get(cfg, "train.amp.enabled", False)):
        device = device_of(cfg)
        if device.type == "cuda" and torch.cuda.is_available():
            return AMPTrainerChecked(model, data_loader, optimizer)
        logger.warning(
            f"train.amp.enabled=True, but train.device={device} has no CUDA: mixed precision "
            "training (AMPTrainer) needs a GPU. Training in full precision with SimpleTrainer."
        )
    return Trainer(model, data_loader, optimizer)


def build_optimizer(cfg, model) -> torch.optim.Optimizer:
    """``cfg.optimizer`` for ``model``, clipping gradients as ``train.clip_grad`` says."""
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    options = clip_grad_options(cfg)
    if options["enabled"]:
        logger.info(
            f"Gradient clipping: {options['clip_type']} at {options['clip_value']}"
            + (f" (norm type {options['norm_type']})" if options["clip_type"] == "norm" else "")
        )
    return add_gradient_clipping(optimizer, options)


def build_writers(cfg, eval_timer: Optional[EvalTimer] = None) -> List[Any]:
    """detectron2's default writers (console, ``metrics.json``, TensorBoard), with the median
    window of ``train.metrics_window``. The console's ETA is the median of the recent iteration
    times, plus the evaluations left at the cost of the last one ``eval_timer`` measured
    (:class:`~dense_assign.engine.writers.RecentETAPrinter`); the file writers can drop what a
    resumed run writes again (:func:`~dense_assign.engine.writers.resume_writers`)."""
    window = int(cfg_option(cfg, "train.metrics_window"))
    output_dir = cfg.train.output_dir
    PathManager.mkdirs(output_dir)
    return [
        RecentETAPrinter(
            cfg.train.max_iter,
            window_size=window,
            eval_period=cfg_get(cfg, "train.eval_period", 0) or 0,
            eval_timer=eval_timer,
        ),
        ResumableJSONWriter(os.path.join(output_dir, "metrics.json"), window_size=window),
        ResumableTensorboardXWriter(output_dir, window_size=window),
    ]


def build_hooks(cfg, checkpointer, eval_function: Callable[[], Dict]) -> List[Any]:
    """The training hooks, in this order: iteration timer, LR schedule (``cfg.lr_multiplier``),
    periodic checkpoints (``train.checkpointer``, whose ``max_to_keep`` counts the checkpoints
    already in the output folder; main process), evaluation every ``train.eval_period``
    iterations and after the last one (timed, for the ETA), and the writers of
    :func:`build_writers` every ``train.log_period`` iterations (main process).
    ``None`` entries (other processes) are dropped by ``trainer.register_hooks``."""
    main = comm.is_main_process()
    timed_eval = EvalTimer(eval_function)
    return [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        (
            RetainingPeriodicCheckpointer(checkpointer, **_as_dict(cfg.train.checkpointer))
            if main
            else None
        ),
        hooks.EvalHook(cfg_get(cfg, "train.eval_period", 0), timed_eval),
        (
            hooks.PeriodicWriter(
                build_writers(cfg, timed_eval),
                period=cfg_get(cfg, "train.log_period", 20),
            )
            if main
            else None
        ),
    ]


def build_model(cfg) -> torch.nn.Module:
    """Instantiate ``cfg.model`` on ``train.device`` (not wrapped for DDP). An error names the
    config key of the part that failed to build (:class:`~dense_assign.engine.ConfigError`)."""
    model = instantiate_checked(cfg.model, "model")
    logger.info(f"Model:\n{model}")
    model.to(device_of(cfg))
    return model


def maybe_visualize(cfg, model) -> List[str]:
    """Draw ``train.vis_predictions`` test images (default 0: none) on the main process."""
    num = int(cfg_option(cfg, "train.vis_predictions") or 0)
    written: List[str] = []
    if num > 0 and comm.is_main_process():
        written = visualize_predictions(cfg, model, num)
    comm.synchronize()
    return written


def do_train(cfg, resume: bool = False) -> Dict[str, Any]:
    """Train ``cfg.model`` as configured; returns the results of the final evaluation.

    With ``resume``, continues from the last checkpoint of ``train.output_dir`` (iteration,
    optimizer, hook and data-stream states included: with the deterministic data stream of
    :mod:`dense_assign.engine.data` the run continues as if it had not stopped) when there is one,
    after dropping from ``metrics.json`` (and hiding in TensorBoard) what the interrupted run wrote
    for the iterations it trains again; otherwise starts at iteration 0 from
    ``train.init_checkpoint`` (empty: from scratch). After the final evaluation, the main process
    writes the results to ``<train.output_dir>/final_results.json`` and draws
    ``train.vis_predictions`` images.
    """
    model = build_model(cfg)
    num_classes = getattr(model, "num_classes", None)
    optimizer = build_optimizer(cfg, model)
    # Datasets are loaded and checked before training: bad data fails here, not at iteration N
    # or in the final evaluation.
    train_loader = build_train_loader(cfg, num_classes)
    check_test_dataset(cfg, num_classes)

    model = create_ddp_model(model, **ddp_kwargs(cfg))
    trainer = build_trainer(cfg, model, train_loader, optimizer)
    # The trainer's state holds the iteration, the optimizer and the hooks' states; the data
    # stream's, its seed. Checkpoints are written atomically.
    checkpointables = {"trainer": trainer}
    if isinstance(train_loader, DeterministicTrainLoader):
        checkpointables[TRAIN_DATA_STATE] = train_loader
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, **checkpointables)

    latest: Dict[str, Any] = {}

    def evaluate():
        results = do_test(cfg, model)
        latest["results"] = results
        return results

    train_hooks = build_hooks(cfg, checkpointer, evaluate)
    trainer.register_hooks(train_hooks)

    init_checkpoint = cfg_get(cfg, "train.init_checkpoint", "") or ""
    checkpointer.resume_or_load(init_checkpoint, resume=resume)
    if resume and checkpointer.has_checkpoint():
        # A checkpoint stores the iteration that just finished.
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
        # A partial train.init_checkpoint is normal (ImageNet backbone weights, fine-tuning for
        # another class count): one summary line, no error (--eval-only refuses it).
        mismatch = checkpoint_mismatch(model, checkpointer.incompatible) if init_checkpoint else ""
        if mismatch:
            logger.info(
                f"train.init_checkpoint={init_checkpoint} initializes part of the model: "
                f"{mismatch}. Those parameters start from their initialization"
            )
    if resume and comm.is_main_process():
        # What the interrupted run wrote for iterations >= start_iter is written again: drop it
        # from metrics.json, hide it in TensorBoard.
        resume_writers(train_hooks, start_iter)
    if isinstance(train_loader, DeterministicTrainLoader):
        train_loader.start_iter = start_iter  # its first batch is drawn by trainer.train
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
    one), otherwise ``train.init_checkpoint``. A checkpoint that leaves model parameters unset
    (missing, or of another shape: trained for another ``model.num_classes``) is a
    :class:`~dense_assign.engine.checkpoint.CheckpointError` naming them, unless
    ``train.allow_partial_checkpoint=True``. The main process writes the results to
    ``<train.output_dir>/eval_results.json`` and draws ``train.vis_predictions`` images."""
    model = create_ddp_model(build_model(cfg), **ddp_kwargs(cfg))
    checkpointer = AtomicCheckpointer(model, cfg_get(cfg, "train.output_dir", "") or "")
    init_checkpoint = cfg_get(cfg, "train.init_checkpoint", "") or ""
    checkpoint_path = init_checkpoint
    if resume and checkpointer.has_checkpoint():
        checkpoint_path = checkpointer.get_checkpoint_file()
        logger.info(f"Evaluating the last checkpoint {checkpoint_path}")
    elif init_checkpoint:
        logger.info(f"Evaluating train.init_checkpoint={init_checkpoint}")
    else:
        logger.warning(
            "--eval-only without a checkpoint (train.init_checkpoint is empty"
            + (" and the output directory has none" if resume else "")
            + "): evaluating randomly initialized weights"
        )
    checkpointer.resume_or_load(init_checkpoint, resume=resume)
    if checkpoint_path:
        allow_partial = bool(cfg_option(cfg, "train.allow_partial_checkpoint"))
        check_checkpoint_fits(model, checkpointer.incompatible, checkpoint_path, allow_partial)
    results = do_test(cfg, model)
    path = results_path(cfg, EVAL_RESULTS_FILE)
    if comm.is_main_process() and results and path:
        write_results_json(results, path)
        logger.info(f"Evaluation results -> {path}")
    maybe_visualize(cfg, model)
    return results

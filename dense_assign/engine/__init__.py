"""Training / evaluation machinery behind ``train_net.py``, reusable from tests and tools.

* :mod:`.config`: :func:`load_config` (LazyConfig + checked ``key=value`` overrides),
  :func:`cfg_get`, :func:`check_config`, :class:`ConfigError`, :func:`instantiate_checked`.
* :mod:`.datasets`: :func:`prepare_datasets` (generates the ``synthetic_*`` datasets a config
  names, one process per machine first).
* :mod:`.data`: checked datasets and :class:`DeterministicTrainLoader` (batches a function of
  seed and iteration: exact ``--resume``, multi-process equivalence).
* :mod:`.checkpoint`: :class:`AtomicCheckpointer`.
* :mod:`.stability`: stop on a non-finite loss naming it, ``train.clip_grad``.
* :mod:`.trainer`: :func:`do_train`, :func:`do_eval_only`, :func:`build_trainer`,
  :func:`build_hooks`, :func:`ddp_kwargs`, :func:`build_model`, :func:`build_optimizer`.
* :mod:`.evaluation`: :func:`do_test`, :func:`build_evaluator`, :func:`write_results_json`.
* :mod:`.visualization`: :func:`visualize_predictions`.
* :mod:`.launcher`: :func:`build_argument_parser`, :func:`launch_from_args`, :func:`launch_cli`,
  :func:`run`,
  :func:`setup`, :func:`configure_cpu_threads`.
"""

from .checkpoint import AtomicCheckpointer
from .config import (
    CLIP_GRAD_DEFAULTS,
    OPTIONAL_KEYS,
    ConfigError,
    apply_overrides,
    cfg_get,
    cfg_option,
    check_config,
    check_num_classes,
    clip_grad_options,
    dataset_names,
    device_of,
    instantiate_checked,
    load_config,
)
from .data import (
    DeterministicTrainLoader,
    build_test_loader,
    build_train_loader,
    check_test_dataset,
)
from .datasets import dataset_names_from_cfg, prepare_datasets
from .evaluation import (
    EVAL_RESULTS_FILE,
    FINAL_RESULTS_FILE,
    build_evaluator,
    do_test,
    results_to_json,
    write_results_json,
)
from .launcher import (
    build_argument_parser,
    configure_cpu_threads,
    cpu_threads_per_process,
    import_project_modules,
    launch_cli,
    launch_from_args,
    run,
    setup,
)
from .stability import (
    NonFiniteLossError,
    add_gradient_clipping,
    check_losses_finite,
    non_finite_losses,
)
from .trainer import (
    AMPTrainerChecked,
    Trainer,
    build_hooks,
    build_model,
    build_optimizer,
    build_trainer,
    build_writers,
    ddp_kwargs,
    do_eval_only,
    do_train,
    maybe_visualize,
)
from .visualization import (
    PREDICTIONS_DIR,
    VIS_MIN_SIDE,
    draw_gt_and_predictions,
    visualize_predictions,
)

__all__ = [
    "AtomicCheckpointer",
    "CLIP_GRAD_DEFAULTS",
    "OPTIONAL_KEYS",
    "ConfigError",
    "apply_overrides",
    "cfg_get",
    "cfg_option",
    "dataset_names",
    "check_config",
    "check_num_classes",
    "clip_grad_options",
    "instantiate_checked",
    "load_config",
    "DeterministicTrainLoader",
    "build_test_loader",
    "build_train_loader",
    "check_test_dataset",
    "NonFiniteLossError",
    "add_gradient_clipping",
    "check_losses_finite",
    "non_finite_losses",
    "AMPTrainerChecked",
    "Trainer",
    "build_optimizer",
    "build_writers",
    "dataset_names_from_cfg",
    "prepare_datasets",
    "EVAL_RESULTS_FILE",
    "FINAL_RESULTS_FILE",
    "build_evaluator",
    "do_test",
    "results_to_json",
    "write_results_json",
    "build_argument_parser",
    "configure_cpu_threads",
    "cpu_threads_per_process",
    "import_project_modules",
    "launch_cli",
    "launch_from_args",
    "run",
    "setup",
    "build_hooks",
    "build_model",
    "build_trainer",
    "ddp_kwargs",
    "device_of",
    "do_eval_only",
    "do_train",
    "maybe_visualize",
    "PREDICTIONS_DIR",
    "visualize_predictions",
    "draw_gt_and_predictions",
    "VIS_MIN_SIDE",
]

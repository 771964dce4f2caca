"""Training / evaluation machinery behind ``train_net.py``, reusable from tests and tools.

* :mod:`.config`: :func:`load_config` (LazyConfig + checked ``key=value`` overrides),
  :func:`cfg_get`, :func:`check_config`, :class:`ConfigError`.
* :mod:`.datasets`: :func:`prepare_datasets` (generates the ``synthetic_*`` datasets a config
  names, one process per machine first).
* :mod:`.trainer`: :func:`do_train`, :func:`do_eval_only`, :func:`build_trainer`,
  :func:`build_hooks`, :func:`ddp_kwargs`, :func:`build_model`.
* :mod:`.evaluation`: :func:`do_test`, :func:`build_evaluator`, :func:`write_results_json`.
* :mod:`.visualization`: :func:`visualize_predictions`.
* :mod:`.launcher`: :func:`build_argument_parser`, :func:`launch_from_args`, :func:`run`,
  :func:`setup`, :func:`configure_cpu_threads`.
"""

from .config import (
    OPTIONAL_KEYS,
    ConfigError,
    apply_overrides,
    cfg_get,
    check_config,
    device_of,
    load_config,
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
    launch_from_args,
    run,
    setup,
)
from .trainer import (
    build_hooks,
    build_model,
    build_trainer,
    ddp_kwargs,
    do_eval_only,
    do_train,
    maybe_visualize,
)
from .visualization import PREDICTIONS_DIR, visualize_predictions

__all__ = [
    "OPTIONAL_KEYS",
    "ConfigError",
    "apply_overrides",
    "cfg_get",
    "check_config",
    "load_config",
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
]

"""Command line of ``train_net.py``: argument parser, per-process setup and ``launch``.

``train_net.py`` parses the arguments, then :func:`launch_from_args` checks the config in the
launching process (clear errors before any worker starts) and calls detectron2's ``launch``,
which runs :func:`run` in each of ``--num-gpus`` processes per machine (in the calling process
when there is only one).
"""

import copy
import logging
import os
import sys
from typing import Any, Callable, Dict, Optional

import torch
from detectron2.engine import default_argument_parser, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.engine import launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .config import ConfigError, check_config, device_of, instantiate_checked, load_config
from .datasets import prepare_datasets
from .trainer import do_eval_only, do_train

__all__ = [
    "build_argument_parser",
    "import_project_modules",
    "cpu_threads_per_process",
    "configure_cpu_threads",
    "setup",
    "run",
    "launch_from_args",
]

logger = logging.getLogger(__name__)

_EPILOG = """
Examples:

Train (the output directory is train.output_dir of the config):
    $ {prog} --config-file CONFIG.py
Override config values with key=value (hydra syntax; use null for None, +key=value to add a key):
    $ {prog} --config-file CONFIG.py train.max_iter=1000 train.output_dir=output/run1
Resume from the last checkpoint of train.output_dir:
    $ {prog} --config-file CONFIG.py --resume
Evaluate a checkpoint (results also go to <train.output_dir>/eval_results.json):
    $ {prog} --config-file CONFIG.py --eval-only train.init_checkpoint=PATH.pth
Two processes on CPU (no GPU needed; gloo backend):
    $ {prog} --config-file CONFIG.py --num-gpus 2 train.device=cpu

Processes: --num-gpus N starts N processes per machine, one per GPU; with train.device=cpu it is
the number of CPU processes, each with max(1, cores // N) threads (unless OMP_NUM_THREADS is
set), and DistributedDataParallel gets device_ids=None by itself.
Multiple machines:
    (machine0)$ {prog} --machine-rank 0 --num-machines 2 --dist-url tcp://HOST:PORT [...]
    (machine1)$ {prog} --machine-rank 1 --num-machines 2 --dist-url tcp://HOST:PORT [...]
Use --dist-url auto for a free local port in single-machine runs.

Config keys read besides detectron2's standard ones: train.vis_predictions (int, default 0):
after the final evaluation, draw the predictions (score > 0.3) on that many test images into
<train.output_dir>/predictions/. The final metrics go to <train.output_dir>/final_results.json.
train.clip_grad.{{enabled,clip_type,clip_value,norm_type}} (default off; clip_type norm or value):
gradient clipping. train.metrics_window (default 20): iterations of the median of the logged
losses (1: each iteration's own). train.deterministic_data (default True): training batches are a
function of train.seed and the iteration, so --resume and several processes see the same data.
"""


def build_argument_parser(prog: Optional[str] = None):
    """detectron2's ``default_argument_parser`` with this project's help text."""
    prog = prog or os.path.basename(sys.argv[0]) or "train_net.py"
    return default_argument_parser(epilog=_EPILOG.format(prog=prog))


def import_project_modules() -> None:
    """Import the modules that register the project's components: ``dense_assign.data``
    (synthetic datasets) and ``dense_assign.modeling`` (meta-architectures) when it exists."""
    import dense_assign.data  # noqa: F401

    try:
        import dense_assign.modeling  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "dense_assign.modeling":
            raise


def cpu_threads_per_process(num_processes: int, num_cores: Optional[int] = None) -> int:
    """Threads per process when ``num_processes`` share the machine's cores: ``cores // N``,
    at least 1. (Oversubscribed OpenMP threads made 2 processes on 2 cores about 7x slower.)"""
    if num_cores is None:
        try:
            num_cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            num_cores = os.cpu_count() or 1
    return max(1, num_cores // max(1, num_processes))


def _is_cpu_multiprocess(cfg, num_local_processes: int) -> bool:
    return num_local_processes > 1 and device_of(cfg).type == "cpu"


def configure_cpu_threads(cfg) -> Optional[int]:
    """In a worker: with several CPU processes on this machine, limit torch's threads to
    ``OMP_NUM_THREADS`` when set, else :func:`cpu_threads_per_process`. Returns the number set."""
    local_size = comm.get_local_size()
    if not _is_cpu_multiprocess(cfg, local_size):
        return None
    env = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(env) if env.isdigit() and int(env) > 0 else cpu_threads_per_process(local_size)
    torch.set_num_threads(threads)
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    logger.info(
        f"{local_size} CPU processes on this machine: {threads} torch thread(s) each "
        + (f"(OMP_NUM_THREADS={env})" if env else "(cores // processes)")
        + ("; GPUs hidden from them (CUDA_VISIBLE_DEVICES='')" if hidden else "")
    )
    return threads


def _prepare_environment(cfg, num_local_processes: int) -> Dict[str, str]:
    """Environment for CPU worker processes, set before they are spawned (they inherit it):
    ``OMP_NUM_THREADS`` (unless set), and no visible GPU, so that detectron2's ``launch`` uses
    the gloo backend even on a machine that has GPUs (it picks NCCL whenever CUDA is available)."""
    changed: Dict[str, str] = {}
    if not _is_cpu_multiprocess(cfg, num_local_processes):
        return changed
    if "OMP_NUM_THREADS" not in os.environ:
        changed["OMP_NUM_THREADS"] = str(cpu_threads_per_process(num_local_processes))
    if torch.cuda.is_available():
        changed["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.update(changed)
    return changed


def _plain_config_text(code, filename):
    """Stands for detectron2's ``engine.defaults._highlight``: the config text as it is. The
    highlighted version carries ANSI colour codes, which ``default_setup`` also writes into
    ``log.txt``."""
    return code


def setup(args):
    """Per-process setup: load the config with the command-line overrides, ``default_setup``
    (logger, environment info, ``config.yaml`` in the output directory, seed), the project's
    logger and the CPU thread count. Returns the config."""
    import_project_modules()
    cfg = load_config(args.config_file, args.opts)
    # detectron2 (v0.6 and main) logs the config file through _highlight; keep log.txt plain.
    if hasattr(d2_defaults, "_highlight"):
        d2_defaults._highlight = _plain_config_text
    default_setup(cfg, args)
    output_dir = cfg.train.output_dir if "output_dir" in cfg.train else None
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="dense_assign")
    configure_cpu_threads(cfg)
    return cfg


def run(args) -> Dict[str, Any]:
    """The work of one process: setup, dataset preparation, then training or ``--eval-only``.
    Returns the evaluation results (empty on non-main processes)."""
    cfg = setup(args)
    prepare_datasets(cfg)
    if args.eval_only:
        return do_eval_only(cfg, resume=args.resume)
    return do_train(cfg, resume=args.resume)


def launch_from_args(args, main_func: Callable = run) -> None:
    """Check the config in this process, then start ``main_func(args)`` in ``args.num_gpus``
    processes per machine with detectron2's ``launch``. Raises ``ConfigError`` for a bad config
    file or override (and, with several processes, a model that cannot be built) before any
    process is started."""
    import_project_modules()
    cfg = load_config(args.config_file, args.opts)
    check_config(cfg, eval_only=args.eval_only, config_file=args.config_file)
    if args.num_gpus * args.num_machines > 1:
        # Build the model once here, on the CPU, so that a bad model config is one clear error
        # (ConfigError) before the workers start; a single process builds it in run() and
        # raises the same error in this process.
        instantiate_checked(copy.deepcopy(cfg.model), "model")
    _prepare_environment(cfg, args.num_gpus)
    launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def launch_cli(parser, args, main_func: Callable = run) -> None:
    """:func:`launch_from_args` for a command line (``train_net.py``, the tools that evaluate
    through it), with its errors as one line each on stderr instead of a traceback: a bad config
    file or override (``ConfigError``: ``parser.error``, exit 2), data that cannot be trained on,
    found before training (``DatasetError``, exit 2), and an image that fails to load later (it
    changed after the check), here, in a data-loader worker or in another process (exit 1, the
    line names the file). Anything else is raised."""
    from ..data import DatasetError
    from ..data.checks import short_error

    try:
        launch_from_args(args, main_func)
    except ConfigError as e:
        parser.error(str(e))
    except DatasetError as e:
        parser.exit(2, f"{parser.prog}: dataset error: {e}\n")
    except Exception as e:
        line = short_error(e)
        if line is None:
            raise
        parser.exit(1, f"{parser.prog}: {line}\n")

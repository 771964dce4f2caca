"""Train several configs with one budget, seed and data, and tabulate their COCO metrics.

    python -m dense_assign.tools.compare [--configs C1.py C2.py ...] [--max-iter 600] \
        [--seed 0] [--jobs 2] [--output output/compare] [--skip-existing] [key=value ...]
    python -m dense_assign.tools.compare --collect-only output/synthetic/fcos_R_18_FPN \
        output/synthetic/atss_R_18_FPN --output output/compare

Training mode: each config (default: the method configs of ``configs/Synthetic-Detection``,
``DEFAULT_CONFIGS``) is trained in its own subprocess through ``dense_assign.engine`` (the code
behind ``train_net.py``) with the same ``train.max_iter`` (``--max-iter``; default: each config's
own), ``train.seed`` (``--seed``) and any extra ``key=value`` overrides, into
``<output>/<config name>/``; each run ends with the config's evaluation
(``final_results.json``). ``--skip-existing`` keeps the runs whose folder already has one.
``--jobs N`` trains N configs at a time, each with cores / N intra-op threads (on the 2-core CPU
machine, two 1-thread runs finish in about 0.75x the time of one 2-thread run after the other).

Then (or with ``--collect-only DIR ...``, for existing output folders) it reads each folder's
``final_results.json`` (AP, AP50, AP75, APs, APm, APl of the ``bbox`` task) and ``metrics.json``
(the training time: the sum over logged iterations of detectron2's per-iteration ``time``, times
the iterations since the previous logged one) and writes ``<output>/results.md``,
``<output>/results.json`` and ``<output>/results.png`` (bar chart).
"""
import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from . import ToolError, add_overrides_arg, config_file_path, run_cli, tool_parser

logger = logging.getLogger("dense_assign.tools.compare")

#: The method configs compared by default (paths under configs/): one per method of DESIGN.md.
DEFAULT_CONFIGS = (
    "Synthetic-Detection/fcos_R_18_FPN.py",
    "Synthetic-Detection/af_baseline_R_18_FPN.py",
    "Synthetic-Detection/pseudo_iou_R_18_FPN.py",
    "Synthetic-Detection/atss_R_18_FPN.py",
    "Synthetic-Detection/retinanet_R_18_FPN.py",
    "Synthetic-Detection/iou_aware_retinanet_R_18_FPN.py",
    "Synthetic-Detection/autoassign_R_18_FPN.py",
    "Synthetic-Detection/sapd_R_18_FPN.py",
)
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "final_results.json"
METRICS_FILE = "metrics.json"
WORKER_FLAG = "--train-one"


# ----------------------------------------------------------------------------- collecting
def read_final_results(run_dir: str, task: str = "bbox") -> Dict[str, Optional[float]]:
    """The ``task`` metrics of ``<run_dir>/final_results.json``; raises :class:`ToolError` naming
    the file when it is missing or has no such task."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise ToolError(f"{path} not found: the run has not finished its final evaluation")
    try:
        with open(path) as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise ToolError(f"{path} is not valid JSON: {e}") from e
    if task not in results:
        raise ToolError(f"{path} has no '{task}' results (tasks: {sorted(results)})")
    return {m: results[task].get(m) for m in METRICS}


def read_train_time(run_dir: str) -> Dict[str, Optional[float]]:
    """Training time from ``<run_dir>/metrics.json`` (detectron2's JSONWriter lines): each
    training line's ``time`` (seconds per iteration, median over its window) counts for the
    iterations since the previous training line. Missing file: None values (with a warning)."""
    path = os.path.join(run_dir, METRICS_FILE)
    out = {"iterations": None, "train_time_s": None, "s_per_iter": None}
    if not os.path.isfile(path):
        logger.warning(f"{path} not found: no training time for this run")
        return out
    points = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ToolError(f"{path}, line {number}: not JSON ({e})") from e
            if "time" in entry and "iteration" in entry:
                points[int(entry["iteration"])] = float(entry["time"])
    if not points:
        return out
    total, previous = 0.0, -1
    for iteration in sorted(points):
        total += points[iteration] * (iteration - previous)
        previous = iteration
    out["iterations"] = previous + 1
    out["train_time_s"] = total
    out["s_per_iter"] = total / (previous + 1)
    return out


def collect(run_dirs: Sequence[str], names: Optional[Sequence[str]] = None) -> List[Dict]:
    """One entry per run folder: name, folder, the metrics and the training time."""
    rows = []
    for i, run_dir in enumerate(run_dirs):
        if not os.path.isdir(run_dir):
            raise ToolError(f"--collect-only {run_dir}: not a folder")
        name = names[i] if names else os.path.basename(os.path.normpath(run_dir))
        rows.append(
            {
                "name": name,
                "output_dir": run_dir,
                **read_final_results(run_dir),
                **read_train_time(run_dir),
            }
        )
    return rows


def _fmt(value, pattern="{:.1f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def markdown_table(rows: Sequence[Dict]) -> str:
    head = ["run"] + list(METRICS) + ["iterations", "train time (s)", "s/iter"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"]] + [_fmt(r.get(m)) for m in METRICS]
        cells += [
            _fmt(r.get("iterations"), "{}"),
            _fmt(r.get("train_time_s"), "{:.1f}"),
            _fmt(r.get("s_per_iter"), "{:.3f}"),
        ]
        if r.get("error"):
            cells = [r["name"]] + ["-"] * (len(head) - 2) + [f"failed: {r['error']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(rows: Sequence[Dict], path: str, metrics=("AP", "AP50", "AP75")) -> str:
    """Grouped bars of ``metrics`` per run (matplotlib, Agg)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        values = [r.get(metric) if r.get(metric) is not None else 0.0 for r in rows]
        bars = ax.bar(x + (k - (len(metrics) - 1) / 2) * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in rows], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("COCO AP (%)")
    ax.set_title("bbox AP per run")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def machine_description(jobs: int = 1) -> str:
    """One line: CPU count, platform, torch version and device, threads per run."""
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), {device}, "
        f"torch {torch.__version__}, {jobs} run(s) at a time with "
        f"{os.environ.get('OMP_NUM_THREADS') or worker_threads(jobs)} thread(s) each"
    )


def write_report(rows: Sequence[Dict], output: str, meta: Dict) -> Dict[str, str]:
    os.makedirs(output, exist_ok=True)
    paths = {k: os.path.join(output, f"results.{k}") for k in ("md", "json", "png")}
    table = markdown_table(rows)
    with open(paths["md"], "w") as f:
        f.write(f"# Comparison ({meta.get('mode')})\n\n{table}\n")
        if meta.get("mode") == "trained":
            budget = meta.get("max_iter") or "each config's own"
            overrides = meta.get("overrides") or "none"
            f.write(
                f"\nBudget: train.max_iter={budget}, train.seed={meta.get('seed')}, "
                f"overrides {overrides}. Machine: {meta.get('machine')}.\n"
            )
        f.write(
            "\nAP in %, bbox task of final_results.json; train time from metrics.json "
            "(sum of per-iteration times over the logged windows).\n"
        )
    with open(paths["json"], "w") as f:
        json.dump({**meta, "runs": list(rows)}, f, indent=2)
        f.write("\n")
    ok = [r for r in rows if not r.get("error")]
    if ok:
        bar_chart(ok, paths["png"])
    print(f"\n{table}\n")
    for k, p in paths.items():
        logger.info(f"Wrote {p}")
    return paths


# ----------------------------------------------------------------------------- training
def run_name(config: str) -> str:
    return os.path.splitext(os.path.basename(config))[0]


def train_overrides(args, run_dir: str) -> List[str]:
    opts = [f"train.output_dir={run_dir}", f"train.seed={args.seed}"]
    if args.max_iter is not None:
        opts.append(f"train.max_iter={args.max_iter}")
    return opts + list(args.opts or [])


def train_all(args) -> List[Dict]:
    """Train every config in a subprocess (sequentially); returns the collected rows."""
    from ..engine import ConfigError, load_config

    configs = args.configs or list(DEFAULT_CONFIGS)
    paths = [config_file_path(c, "--configs") for c in configs]
    names = [run_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ToolError(f"--configs: two configs have the same name: {names}")
    for path, name in zip(paths, names):  # check every config and override before training
        try:
            load_config(path, train_overrides(args, os.path.join(args.output, name)))
        except ConfigError as e:
            raise ToolError(str(e)) from e
    to_train = []
    for path, name in zip(paths, names):
        run_dir = os.path.join(args.output, name)
        if args.skip_existing and os.path.isfile(os.path.join(run_dir, RESULTS_FILE)):
            logger.info(f"{name}: {run_dir}/{RESULTS_FILE} exists, not training (--skip-existing)")
        else:
            to_train.append((path, name, run_dir))
    errors = _run_workers(args, to_train)
    rows = []
    for path, name in zip(paths, names):
        run_dir = os.path.join(args.output, name)
        if name in errors:
            rows.append({"name": name, "output_dir": run_dir, "error": errors[name]})
            continue
        try:
            rows.extend(collect([run_dir], [name]))
        except ToolError as e:
            rows.append({"name": name, "output_dir": run_dir, "error": str(e)})
    return rows


def worker_threads(jobs: int) -> int:
    """Intra-op threads of each of ``jobs`` parallel trainings: the CPU cores shared out (>= 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _run_workers(args, to_train) -> Dict[str, str]:
    """Train ``(config path, name, run dir)`` runs, ``args.jobs`` at a time, each in its own
    subprocess; returns {name: error} for the runs that failed. With one job a run's output goes
    to this console; with several, to ``<run dir>.log`` (detectron2's ``log.txt`` is in the run
    dir either way) and each run gets ``OMP_NUM_THREADS`` = cores / jobs unless it is set."""
    jobs = max(1, int(args.jobs))
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(worker_threads(jobs))
    pending, running, errors = list(to_train), [], {}
    while pending or running:
        while pending and len(running) < jobs:
            path, name, run_dir = pending.pop(0)
            cmd = [
                sys.executable,
                "-m",
                "dense_assign.tools.compare",
                WORKER_FLAG,
                "--config-file",
                path,
                "--num-gpus",
                str(args.num_gpus),
                *train_overrides(args, run_dir),
            ]
            log = None
            if jobs > 1:
                os.makedirs(args.output, exist_ok=True)
                log = open(run_dir.rstrip(os.sep) + ".log", "w")
            where = f" (console output: {log.name})" if log else ""
            logger.info(f"{name}: training -> {run_dir}{where}\n  $ {' '.join(cmd)}")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
            running.append((proc, name, time.time(), log))
        time.sleep(0.5)
        for item in list(running):
            proc, name, start, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if log:
                log.close()
            logger.info(f"{name}: exit code {proc.returncode} after {time.time() - start:.0f} s")
            if proc.returncode != 0:
                errors[name] = f"exit code {proc.returncode}"
    return errors


def train_one(argv: Sequence[str]) -> None:
    """The worker: ``train_net.py``'s command line (``dense_assign.engine``)."""
    from ..engine import ConfigError, build_argument_parser, launch_from_args

    parser = build_argument_parser(prog="python -m dense_assign.tools.compare --train-one")
    args = parser.parse_args(list(argv))
    try:
        launch_from_args(args)
    except ConfigError as e:
        parser.error(str(e))


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("compare", __doc__)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="CFG",
        help="config files or paths under configs/ (default: DEFAULT_CONFIGS)",
    )
    parser.add_argument(
        "--collect-only",
        nargs="+",
        default=None,
        metavar="DIR",
        help="do not train: tabulate these existing output folders",
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="train.max_iter for every config (default: each config's own)",
    )
    parser.add_argument("--seed", type=int, default=0, help="train.seed for every config")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per run (train_net.py)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at the same time (CPU: each gets cores / jobs threads)",
    )
    parser.add_argument(
        "--output",
        default="output/compare",
        metavar="DIR",
        help="runs go to DIR/<config name>, results to DIR/results.*",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not retrain a run whose folder has final_results.json",
    )
    add_overrides_arg(parser, "overrides applied to every config (e.g. dataset names)")
    return parser


def run(args) -> Dict[str, str]:
    if args.collect_only:
        if args.configs:
            raise ToolError("--collect-only and --configs exclude each other")
        rows = collect(args.collect_only)
        meta = {"mode": "collected", "run_dirs": list(args.collect_only)}
    else:
        if args.max_iter is not None and args.max_iter <= 0:
            raise ToolError(f"--max-iter must be positive, got {args.max_iter}")
        if args.jobs <= 0:
            raise ToolError(f"--jobs must be positive, got {args.jobs}")
        rows = train_all(args)
        meta = {
            "mode": "trained",
            "configs": args.configs or list(DEFAULT_CONFIGS),
            "max_iter": args.max_iter,
            "seed": args.seed,
            "overrides": list(args.opts or []),
            "jobs": args.jobs,
            "machine": machine_description(args.jobs),
        }
    return write_report(rows, args.output, meta)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER_FLAG]:
        return train_one(argv[1:])
    return run_cli(build_parser, run, argv)


if __name__ == "__main__":
    main()

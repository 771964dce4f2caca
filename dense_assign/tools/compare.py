"""Train several configs over several seeds with one budget and data, and tabulate their COCO
metrics as mean and standard deviation over the seeds.

    python -m dense_assign.tools.compare [--selection converge] [--configs C1.py C2.py ...] \
        [--seeds 0 1 2] [--max-iter N] [--jobs 2] [--output output/compare] [--skip-existing] \
        [key=value ...]
    python -m dense_assign.tools.compare --collect-only output/synthetic/fcos_R_18_FPN \
        output/synthetic/atss_R_18_FPN --output output/compare

Training mode: each config (``--configs``, or the configs of a named ``--selection``, see
``selection_configs``) is trained once per seed, each run in its own subprocess through
``dense_assign.engine`` (the code behind ``train_net.py``) with ``train.seed=<seed>``, the same
``train.max_iter`` (``--max-iter``; default: each config's own) and any extra ``key=value``
overrides, into ``<output>/<config name>/seed<seed>/``; each run ends with the config's evaluation
(``final_results.json``) and its wall time goes to ``compare_run.json`` beside it.
``--skip-existing`` keeps the runs whose folder already has ``final_results.json``, so an
interrupted comparison resumes where it stopped. ``--jobs N`` trains N runs at a time, each with
cores / N intra-op threads.

Then (or with ``--collect-only DIR ...``, for existing output folders, one run each) it reads each
run's ``final_results.json`` (AP, AP50, AP75, APs, APm, APl of the ``bbox`` task) and
``metrics.json`` (the training time: the sum over logged iterations of detectron2's
per-iteration ``time``, times the iterations since the previous logged one) and writes
``<output>/results.md`` (mean +- std over seeds per config, then every run),
``<output>/results.json``, ``<output>/results.png`` (bars with the seeds' std as error bars) and,
when the configs of a paper's claim are present, ``<output>/claims.md``
(:mod:`dense_assign.tools.claims`).
"""

import argparse
import glob
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from . import ToolError, add_overrides_arg, config_file_path, pipe_table, run_cli, tool_parser

logger = logging.getLogger("dense_assign.tools.compare")

#: The 320-640 px method configs of ``configs/Synthetic-Detection`` (one per method of README.md,
#: "Methods"), the ``synthetic`` selection: short runs there do not converge on a CPU (README).
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
#: The converging CPU benchmark's folder: its top-level configs are the ``converge`` selection,
#: those of its ``ablations/`` subfolder the ``converge-ablations`` selection. A config added
#: there joins its selection with no list to edit.
CONVERGE_DIR = "Synthetic-Converge"
SELECTIONS = ("converge", "converge-ablations", "converge-all", "synthetic")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "final_results.json"
METRICS_FILE = "metrics.json"
RUN_FILE = "compare_run.json"
#: Assignment statistics the detector logs (README "Using train_net.py"), reported per config: the
#: positives per GT, the fraction of GTs left without a positive, and the share of the positives
#: on each pyramid level (P3 ... P7).
ASSIGN_STATS = ("assign/pos_per_gt_mean", "assign/gt_without_pos_frac") + tuple(
    f"assign/pos_frac_level{i}" for i in range(5)
)
WORKER_FLAG = "--train-one"


def selection_configs(selection: str) -> List[str]:
    """The config paths (under ``configs/``) of a named selection, sorted by file name for the
    converge folders, so every checkout lists them in one order."""
    from ..model_zoo import config_root

    if selection == "synthetic":
        return list(DEFAULT_CONFIGS)
    if selection == "converge-all":
        return selection_configs("converge") + selection_configs("converge-ablations")
    if selection not in SELECTIONS:
        raise ToolError(f"--selection {selection!r}: choose one of {list(SELECTIONS)}")
    sub = CONVERGE_DIR if selection == "converge" else os.path.join(CONVERGE_DIR, "ablations")
    found = sorted(glob.glob(os.path.join(config_root(), sub, "*.py")))
    if not found:
        raise ToolError(
            f"--selection {selection}: no configs in {os.path.join(config_root(), sub)}"
        )
    return [os.path.relpath(p, config_root()) for p in found]


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
    iterations since the previous training line. Also the learning curve: ``ap_curve``, the
    ``bbox/AP`` of every evaluation as [iteration + 1, AP]; and ``assign``, the last logged values
    of the assignment statistics :data:`ASSIGN_STATS`. Missing file: None values (with a
    warning)."""
    path = os.path.join(run_dir, METRICS_FILE)
    out = {
        "iterations": None,
        "train_time_s": None,
        "s_per_iter": None,
        "ap_curve": [],
        "assign": {},
    }
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
            if "bbox/AP" in entry and "iteration" in entry:
                out["ap_curve"].append([int(entry["iteration"]) + 1, float(entry["bbox/AP"])])
            stats = {k: v for k, v in entry.items() if k in ASSIGN_STATS}
            if stats:
                out["assign"] = stats  # the last logged values
    if not points:
        return out
    total, previous = 0.0, -1
    for iteration in sorted(points):
        total += points[iteration] * (iteration - previous)
        previous = iteration
    out["iterations"] = previous + 1
    # detectron2 logs a periodic evaluation at the iteration it follows, the final one at
    # max_iter: both come after previous + 1 iterations at most.
    out["ap_curve"] = [[min(i, previous + 1), ap] for i, ap in out["ap_curve"]]
    out["train_time_s"] = total
    out["s_per_iter"] = total / (previous + 1)
    return out


def read_wall_time(run_dir: str) -> Optional[float]:
    """The run's wall time in seconds (``compare_run.json``, written when compare trained it)."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return float(json.load(f)["wall_s"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ToolError(f"{path}: no wall time ({e})") from e


def collect(
    run_dirs: Sequence[str],
    names: Optional[Sequence[str]] = None,
    seeds: Optional[Sequence[Optional[int]]] = None,
) -> List[Dict]:
    """One entry per run folder: name, seed, folder, the metrics and the training and wall time.
    Without ``names``, a folder named ``seed<S>`` (compare's layout) is run ``S`` of the config
    named by its parent folder; any other folder is a run named by itself, with no seed."""
    rows = []
    for i, run_dir in enumerate(run_dirs):
        if not os.path.isdir(run_dir):
            raise ToolError(f"--collect-only {run_dir}: not a folder")
        name, seed = names[i] if names else None, seeds[i] if seeds else None
        if name is None:
            folder = os.path.normpath(run_dir)
            name = os.path.basename(folder)
            if re.fullmatch(r"seed\d+", name):
                name, seed = os.path.basename(os.path.dirname(folder)), int(name[4:])
        rows.append(
            {
                "name": name,
                "seed": seed,
                "output_dir": run_dir,
                **read_final_results(run_dir),
                **read_train_time(run_dir),
                "wall_s": read_wall_time(run_dir),
            }
        )
    return rows


def mean_std(values: Sequence[Optional[float]]):
    """(mean, sample std, n) of the non-missing values; std is None below two values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def aggregate(rows: Sequence[Dict]) -> List[Dict]:
    """One entry per config name, in first-seen order: mean / std / n of every metric over its
    successful runs (``<metric>``, ``<metric>_std``), the seeds, the failed runs, the mean wall
    and training time per run."""
    groups: Dict[str, List[Dict]] = {}
    for r in rows:
        groups.setdefault(r["name"], []).append(r)
    out = []
    for name, runs in groups.items():
        ok = [r for r in runs if not r.get("error")]
        entry = {
            "name": name,
            "seeds": [r.get("seed") for r in ok],
            "failed": [r.get("seed") for r in runs if r.get("error")],
            "n": len(ok),
        }
        for key in METRICS + ("wall_s", "train_time_s", "s_per_iter", "iterations"):
            mean, std, _ = mean_std([r.get(key) for r in ok])
            entry[key], entry[f"{key}_std"] = mean, std
        for key in ASSIGN_STATS:
            entry[key] = mean_std([(r.get("assign") or {}).get(key) for r in ok])[0]
        curves = [dict((int(i), ap) for i, ap in r.get("ap_curve") or []) for r in ok]
        common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        entry["ap_curve"] = [[i, mean_std([c[i] for c in curves])[0]] for i in common]
        out.append(entry)
    return out


def _fmt(value, pattern="{:.1f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def _pm(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def markdown_table(rows: Sequence[Dict]) -> str:
    """One line per run."""
    head = ["run", "seed"] + list(METRICS) + ["iterations", "train time (s)", "s/iter", "wall (s)"]
    lines = []
    for r in rows:
        cells = [r["name"], _fmt(r.get("seed"), "{}")] + [_fmt(r.get(m)) for m in METRICS]
        cells += [
            _fmt(r.get("iterations"), "{}"),
            _fmt(r.get("train_time_s"), "{:.1f}"),
            _fmt(r.get("s_per_iter"), "{:.3f}"),
            _fmt(r.get("wall_s"), "{:.0f}"),
        ]
        if r.get("error"):
            cells = cells[:2] + ["-"] * (len(head) - 3) + [f"failed: {r['error']}"]
        lines.append(cells)
    return pipe_table(head, lines)


def summary_table(groups: Sequence[Dict]) -> str:
    """One line per config: mean ± std over its seeds."""
    head = ["config", "seeds"] + list(METRICS) + ["AP curve (mean)", "wall per run (s)", "s/iter"]
    lines = []
    for g in groups:
        seeds = f"{g['n']}" + (f" ({len(g['failed'])} failed)" if g["failed"] else "")
        cells = [g["name"], seeds] + [_pm(g[m], g[f"{m}_std"]) for m in METRICS]
        curve = ", ".join(f"{ap:.1f} @{i}" for i, ap in g.get("ap_curve") or []) or "-"
        cells += [curve, _fmt(g.get("wall_s"), "{:.0f}"), _fmt(g.get("s_per_iter"), "{:.3f}")]
        lines.append(cells)
    return pipe_table(head, lines)


def assignment_table(groups: Sequence[Dict]) -> str:
    """One line per config: the assignment statistics at the end of training (mean over seeds)."""
    head = ["config", "positives per GT", "GTs without positive (%)"]
    head += [f"positives on P{i + 3} (%)" for i in range(5)]
    lines = []
    for g in groups:
        pct = [g.get("assign/gt_without_pos_frac")] + [
            g.get(f"assign/pos_frac_level{i}") for i in range(5)
        ]
        cells = [g["name"], _fmt(g.get("assign/pos_per_gt_mean"))]
        cells += [_fmt(None if v is None else 100 * v, "{:.0f}") for v in pct]
        lines.append(cells)
    return pipe_table(head, lines)


def bar_chart(groups: Sequence[Dict], path: str, metrics=("AP", "AP50", "AP75")) -> str:
    """Grouped bars of ``metrics`` per config, the seeds' std as error bars (matplotlib, Agg)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        values = [g.get(metric) if g.get(metric) is not None else 0.0 for g in groups]
        errors = [g.get(f"{metric}_std") or 0.0 for g in groups]
        bars = ax.bar(
            x + (k - (len(metrics) - 1) / 2) * width,
            values,
            width,
            yerr=errors,
            capsize=2,
            error_kw={"elinewidth": 0.8},
            label=metric,
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=2)
    ax.set_xticks(x)
    ax.set_xticklabels([g["name"] for g in groups], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("COCO AP (%)")
    n = sorted({g["n"] for g in groups})
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    ax.set_title(f"bbox AP per config (mean over {seeds} seed(s), error bars: std)")
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
    from .claims import claims_table, evaluate_claims

    os.makedirs(output, exist_ok=True)
    paths = {k: os.path.join(output, f"results.{k}") for k in ("md", "json", "png")}
    groups = aggregate(rows)
    summary, table = summary_table(groups), markdown_table(rows)
    with open(paths["md"], "w") as f:
        f.write(f"# Comparison ({meta.get('mode')})\n\n")
        f.write(f"## Mean ± std over seeds\n\n{summary}\n\n## Every run\n\n{table}\n")
        if meta.get("mode") == "trained":
            budget = meta.get("max_iter") or "each config's own"
            overrides = meta.get("overrides") or "none"
            seeds = " ".join(str(x) for x in meta.get("seeds", []))
            f.write(
                f"\nBudget: train.max_iter={budget}, train.seed in {{{seeds}}}, "
                f"overrides {overrides}. Machine: {meta.get('machine')}.\n"
            )
        f.write(
            "\nAP in %, bbox task of final_results.json (std: sample standard deviation over the "
            "seeds); train time from metrics.json (sum of per-iteration times over the logged "
            "windows); wall: the whole run (start, training, evaluation) as compare timed it.\n"
        )
        f.write(
            "\n## Assignment at the end of training (mean over seeds)\n\n"
            "The detector's assign/* statistics of the last logged iteration (detectron2's median "
            f"over the last log period).\n\n{assignment_table(groups)}\n"
        )
    claims = evaluate_claims(groups)
    if claims:
        paths["claims"] = os.path.join(output, "claims.md")
        with open(paths["claims"], "w") as f:
            f.write("# Papers' claims on these runs\n\n" + claims_table(claims) + "\n")
    with open(paths["json"], "w") as f:
        json.dump(
            {**meta, "configs_summary": groups, "claims": claims, "runs": list(rows)}, f, indent=2
        )
        f.write("\n")
    ok = [g for g in groups if g["n"]]
    if ok:
        bar_chart(ok, paths["png"])
    print(f"\n{summary}\n\n{table}\n")
    if claims:
        print(claims_table(claims) + "\n")
    for p in paths.values():
        logger.info(f"Wrote {p}")
    return paths


# ----------------------------------------------------------------------------- training
def run_name(config: str) -> str:
    return os.path.splitext(os.path.basename(config))[0]


def run_dir_of(output: str, name: str, seed: int) -> str:
    return os.path.join(output, name, f"seed{seed}")


def train_overrides(args, run_dir: str, seed: int) -> List[str]:
    opts = [f"train.output_dir={run_dir}", f"train.seed={seed}"]
    if args.max_iter is not None:
        opts.append(f"train.max_iter={args.max_iter}")
    return opts + list(args.opts or [])


def train_all(args, configs: Sequence[str]) -> List[Dict]:
    """Train every (config, seed) in a subprocess; returns the collected rows, one per run."""
    from ..engine import ConfigError, load_config

    paths = [config_file_path(c, "--configs") for c in configs]
    names = [run_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ToolError(f"--configs: two configs have the same name: {names}")
    for path, name in zip(paths, names):  # check every config and override before training
        try:
            load_config(path, train_overrides(args, run_dir_of(args.output, name, 0), 0))
        except ConfigError as e:
            raise ToolError(str(e)) from e
    # Trained seed by seed (every config's first seed, then every config's second, ...), so that an
    # interrupted comparison has every config; reported config by config.
    runs = [
        (p, n, s, run_dir_of(args.output, n, s)) for s in args.seeds for p, n in zip(paths, names)
    ]
    to_train = []
    for path, name, seed, run_dir in runs:
        if args.skip_existing and os.path.isfile(os.path.join(run_dir, RESULTS_FILE)):
            logger.info(
                f"{name} seed {seed}: {run_dir}/{RESULTS_FILE} exists, not training (--skip-existing)"
            )
        else:
            to_train.append((path, name, seed, run_dir))
    errors = _run_workers(args, to_train)
    rows = []
    for path, name, seed, run_dir in sorted(runs, key=lambda r: names.index(r[1])):
        if (name, seed) in errors:
            rows.append(
                {"name": name, "seed": seed, "output_dir": run_dir, "error": errors[(name, seed)]}
            )
            continue
        try:
            rows.extend(collect([run_dir], [name], [seed]))
        except ToolError as e:
            rows.append({"name": name, "seed": seed, "output_dir": run_dir, "error": str(e)})
    return rows


def worker_threads(jobs: int) -> int:
    """Intra-op threads of each of ``jobs`` parallel trainings: the CPU cores shared out (>= 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _run_workers(args, to_train) -> Dict:
    """Train ``(config path, name, seed, run dir)`` runs, ``args.jobs`` at a time, each in its own
    subprocess; returns {(name, seed): error} for the runs that failed. With one job a run's output
    goes to this console; with several, to ``<run dir>.log`` (detectron2's ``log.txt`` is in the
    run dir either way) and each run gets ``OMP_NUM_THREADS`` = cores / jobs unless it is set.
    Each finished run's wall time and exit code go to ``<run dir>/compare_run.json``."""
    jobs = max(1, int(args.jobs))
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(worker_threads(jobs))
    pending, running, errors = list(to_train), [], {}
    total, done = len(pending), 0
    while pending or running:
        while pending and len(running) < jobs:
            path, name, seed, run_dir = pending.pop(0)
            cmd = [
                sys.executable,
                "-m",
                "dense_assign.tools.compare",
                WORKER_FLAG,
                "--config-file",
                path,
                "--num-gpus",
                str(args.num_gpus),
                *train_overrides(args, run_dir, seed),
            ]
            log = None
            if jobs > 1:
                os.makedirs(os.path.dirname(run_dir), exist_ok=True)
                log = open(run_dir.rstrip(os.sep) + ".log", "w")
            where = f" (console output: {log.name})" if log else ""
            logger.info(f"{name} seed {seed}: training -> {run_dir}{where}\n  $ {' '.join(cmd)}")
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None
            )
            running.append((proc, name, seed, run_dir, time.time(), log))
        time.sleep(0.5)
        for item in list(running):
            proc, name, seed, run_dir, start, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if log:
                log.close()
            wall, done = time.time() - start, done + 1
            if os.path.isdir(run_dir):
                with open(os.path.join(run_dir, RUN_FILE), "w") as f:
                    json.dump({"wall_s": wall, "exit_code": proc.returncode, "seed": seed}, f)
            logger.info(
                f"{name} seed {seed}: exit code {proc.returncode} after {wall:.0f} s "
                f"({done}/{total} runs done)"
            )
            if proc.returncode != 0:
                errors[(name, seed)] = f"exit code {proc.returncode}"
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
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="CFG",
        help="config files or paths under configs/ (default: the --selection)",
    )
    which.add_argument(
        "--selection",
        default="converge",
        choices=SELECTIONS,
        help="named set of configs: 'converge' (configs/Synthetic-Converge, the converging CPU "
        "benchmark; default), 'converge-ablations' (its ablations/ folder), 'converge-all' (both), "
        "'synthetic' (the "
        "320-640 px configs of configs/Synthetic-Detection)",
    )
    which.add_argument(
        "--collect-only",
        nargs="+",
        default=None,
        metavar="DIR",
        help="do not train: tabulate these existing run folders (one run each)",
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="train.max_iter for every config (default: each config's own)",
    )
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seeds",
        nargs="+",
        type=int,
        default=[0],
        metavar="S",
        help="train.seed values: every config is trained once per seed (default: 0)",
    )
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
        help="runs go to DIR/<config name>/seed<S>, results to DIR/results.*",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not retrain a run whose folder has final_results.json (resumes a comparison)",
    )
    add_overrides_arg(parser, "overrides applied to every config (e.g. dataset names)")
    return parser


def run(args) -> Dict[str, str]:
    if args.collect_only:
        rows = collect(args.collect_only)
        meta = {"mode": "collected", "run_dirs": list(args.collect_only)}
    else:
        if args.max_iter is not None and args.max_iter <= 0:
            raise ToolError(f"--max-iter must be positive, got {args.max_iter}")
        if args.jobs <= 0:
            raise ToolError(f"--jobs must be positive, got {args.jobs}")
        if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
            raise ToolError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
        configs = args.configs or selection_configs(args.selection)
        rows = train_all(args, configs)
        meta = {
            "mode": "trained",
            "selection": None if args.configs else args.selection,
            "configs": list(configs),
            "max_iter": args.max_iter,
            "seeds": list(args.seeds),
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

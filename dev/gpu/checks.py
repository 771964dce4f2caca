"""The GPU kit's training checks (run by dev/gpu/run.sh; see dev/gpu/README.md).

    python dev/gpu/checks.py amp-train --output amp_train.json [--iters 30] [CONFIG ...]
    python dev/gpu/checks.py step-time --output step_time.json --label after [--config CONFIG]

amp-train
    Trains every config given (default: every COCO R-50 config of configs/COCO-Detection) for
    ``--iters`` iterations with the project's trainer (``AMPTrainerChecked`` on CUDA, which stops
    on a non-finite loss naming it), on in-memory batches of ``--images`` random images of
    ``--size`` (default 2 of 800 x 1333) with random boxes, from randomly initialized weights
    (no ImageNet checkpoint). Per config: passed or the error, seconds per iteration after the
    first 5, the first and last total loss, the peak of ``torch.cuda.max_memory_allocated``.
step-time
    The median time of one training iteration of one config (default: COCO ATSS R-50, AMP on
    CUDA) over ``--iters`` after ``--warmup``, with ``torch.cuda.synchronize()`` around the timed
    span, and the host synchronizations of one iteration counted with
    ``torch.cuda.set_sync_debug_mode("warn")`` and grouped by the Python line that caused them.
    Run once with the current package and once with an older copy on ``PYTHONPATH`` (run.sh's
    "before"): the difference is what the deferred reads (dense_assign.deferred) saved.

Without CUDA both run on the CPU in full precision (the rehearsal: every step but CUDA itself),
with smaller defaults, and say so in their output.
"""

import argparse
import glob
import json
import logging
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA = torch.cuda.is_available()
logger = logging.getLogger("dense_assign.gpu_checks")


def coco_r50_configs():
    return sorted(glob.glob(os.path.join(REPO, "configs", "COCO-Detection", "*_R_50_FPN*.py")))


def _load(path, amp: bool):
    from dense_assign import engine

    engine.import_project_modules()
    # From random weights (no ImageNet checkpoint: the frozen-BN ResNet's features reach 1e4) some
    # configs' first losses are large (RetinaNet's classification loss ~1e6 on random images).
    # The configs' LR warmup (_trainer) and gradient clipping keep the 30 iterations finite (the
    # first GPU runs, at the full LR (no warmup, then a warmup squeezed into 30 iterations), saw
    # box outputs go non-finite after 8-14 iterations in up to 9 of 15 configs), and clipping
    # exercises AMP's unscale-then-clip order.
    overrides = [
        f"train.device={'cuda' if CUDA else 'cpu'}",
        f"train.amp.enabled={amp and CUDA}",
        "train.clip_grad.enabled=True",
    ]
    return engine.load_config(path, overrides)


def _batches(cfg, images, size, num_gt, seed):
    from dense_assign.tools.bench.data import random_batch

    g = torch.Generator().manual_seed(seed)
    num_classes = int(cfg.model.num_classes)
    return [random_batch(images, tuple(size), num_gt, g, num_classes) for _ in range(2)]


def _trainer(cfg, batches):
    import itertools

    from detectron2.config import instantiate
    from detectron2.engine import hooks

    from dense_assign import engine

    torch.manual_seed(0)
    model = engine.build_model(cfg)
    optimizer = engine.build_optimizer(cfg, model)
    trainer = engine.build_trainer(cfg, model, itertools.cycle(batches), optimizer)
    # the config's LR schedule over its own train.max_iter (its warmup: the first iterations at
    # a small fraction of the LR), not over the few iterations run here
    from detectron2.solver import LRMultiplier

    schedule = LRMultiplier(
        optimizer, instantiate(cfg.lr_multiplier), max_iter=int(cfg.train.max_iter)
    )
    trainer.register_hooks([hooks.LRScheduler(scheduler=schedule)])
    return trainer, model


class _Clock:
    """detectron2 hook: synchronized wall clock at the end of chosen iterations."""

    def __init__(self, marks):
        from detectron2.engine import HookBase

        clock = self

        class Hook(HookBase):
            def after_step(self):
                if self.trainer.iter in clock.marks:
                    if CUDA:
                        torch.cuda.synchronize()
                    clock.times[self.trainer.iter] = time.perf_counter()

        self.marks, self.times, self.hook = set(marks), {}, Hook()


def amp_train(args):
    paths = args.configs or coco_r50_configs()
    size = args.size or ((800, 1333) if CUDA else (256, 320))
    iters = args.iters or (30 if CUDA else 3)
    rows = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        row = {"config": os.path.relpath(path, REPO), "iters": iters, "images": args.images}
        row["image_size"] = list(size)
        try:
            cfg = _load(path, amp=True)
            trainer, model = _trainer(cfg, _batches(cfg, args.images, size, args.num_gt, 0))
            row["trainer"] = type(trainer).__name__
            warm = min(5, iters - 1)
            clock = _Clock({warm - 1, iters - 1})
            trainer.register_hooks([clock.hook])
            if CUDA:
                torch.cuda.reset_peak_memory_stats()
            trainer.train(0, iters)
            losses = [v for v, _ in trainer.storage.history("total_loss").values()]
            row.update(
                passed=all(math.isfinite(v) for v in losses) and len(losses) == iters,
                first_loss=losses[0],
                last_loss=losses[-1],
                s_per_iter=(clock.times[iters - 1] - clock.times[warm - 1]) / (iters - warm),
                peak_mem_gb=torch.cuda.max_memory_allocated() / 2**30 if CUDA else None,
            )
            if CUDA:
                row["grad_scale"] = float(trainer.grad_scaler.get_scale())
            del trainer, model
        except Exception as e:  # report and go on with the next config
            row.update(passed=False, error=f"{type(e).__name__}: {e}"[:2000])
            row["traceback"] = traceback.format_exc()[-3000:]
        if CUDA:
            torch.cuda.empty_cache()
        status = "ok" if row["passed"] else f"FAILED ({row.get('error', 'non-finite loss')})"
        print(
            f"[amp-train] {name}: {status}"
            + (
                f", {row['s_per_iter'] * 1e3:.0f} ms/iter, loss {row['first_loss']:.3f} -> "
                f"{row['last_loss']:.3f}"
                if "s_per_iter" in row
                else ""
            ),
            flush=True,
        )
        rows.append(row)
        # after every config: a run stopped at its time limit keeps what it measured
        result = {"cuda": CUDA, "device": _device_name(), "torch": torch.__version__, "rows": rows}
        _write(args.output, result)
    return 0 if all(r["passed"] for r in rows) else 1


def step_time(args):
    # ATSS: its box loss runs in AMP with the code before the deferred reads too (FCOS's GIoU did
    # not: that code fed fvcore's GIoU fp16 boxes)
    path = args.config or os.path.join(REPO, "configs", "COCO-Detection", "atss_R_50_FPN_1x.py")
    size = args.size or ((800, 1333) if CUDA else (256, 320))
    iters = args.iters or (20 if CUDA else 3)
    cfg = _load(path, amp=True)
    trainer, model = _trainer(cfg, _batches(cfg, args.images, size, args.num_gt, 1))
    marks = list(range(args.warmup - 1, args.warmup + iters))
    clock = _Clock(marks)
    trainer.register_hooks([clock.hook])
    trainer.train(0, args.warmup + iters)
    times = [clock.times[i + 1] - clock.times[i] for i in marks[:-1]]
    # one more iteration, with every synchronization reported (on CUDA; the CPU rehearsal runs
    # the same code without the report)
    syncs = Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if CUDA:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            # the step alone, without the hooks (the LR schedule ended with train())
            trainer.iter = args.warmup + iters
            with trainer.storage:
                trainer.storage.iter = trainer.iter
                trainer.run_step()
        finally:
            if CUDA:
                torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            where = os.path.relpath(w.filename, REPO) if REPO in w.filename else w.filename
            syncs[f"{where}:{w.lineno}"] += 1
    import dense_assign

    result = {
        "label": args.label,
        "package": os.path.dirname(dense_assign.__file__),
        "config": os.path.relpath(path, REPO),
        "cuda": CUDA,
        "device": _device_name(),
        "trainer": type(trainer).__name__,
        "images": args.images,
        "image_size": list(size),
        "iters": iters,
        "ms_per_iter_median": statistics.median(times) * 1e3,
        "ms_per_iter_mean": statistics.mean(times) * 1e3,
        "syncs_per_iter": sum(syncs.values()) if CUDA else None,
        "syncs_by_line": dict(syncs.most_common(40)),
    }
    print(
        f"[step-time] {args.label}: {result['ms_per_iter_median']:.1f} ms/iter (median of "
        f"{iters}), {result['syncs_per_iter']} synchronizations per iteration "
        f"({'CUDA' if CUDA else 'CPU: not counted'})",
        flush=True,
    )
    _write(args.output, result)
    return 0


def _device_name():
    return torch.cuda.get_device_name() if CUDA else "cpu (no CUDA: rehearsal)"


def _write(path, data):
    if not path:
        return
    old = {}
    if os.path.exists(path):  # step-time appends its label next to the others
        with open(path) as f:
            old = json.load(f)
    if "label" in data:
        old[data["label"]] = data
        data = old
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("amp-train")
    a.add_argument("configs", nargs="*")
    a.add_argument("--iters", type=int, default=None)
    b = sub.add_parser("step-time")
    b.add_argument("--config", default=None)
    b.add_argument("--label", required=True)
    b.add_argument("--iters", type=int, default=None)
    b.add_argument("--warmup", type=int, default=5)
    for p in (a, b):
        p.add_argument("--output", default=None)
        p.add_argument("--images", type=int, default=2)
        p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
        p.add_argument("--num-gt", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not CUDA:
        print(f"[{args.cmd}] CUDA is not available: running on the CPU in full precision")
    return {"amp-train": amp_train, "step-time": step_time}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

"""A/B timing of the assigners: another checkout's against this tree's, in one process.

On a machine whose speed drifts by a third between runs (README, "Speed and memory"), two
benchmark runs cannot tell a 20% change from the drift. This copies the ``dense_assign``
package of ``--old`` (a checkout, e.g. ``git worktree add /tmp/old REV``) into a temporary folder
as ``dense_assign_old``, builds each named assigner as the assignment benchmark does (this tree's
``dense_assign.tools.bench``: its reference config, one 800 x 1333 image, M random GTs, random
head outputs), gives the old class the new instance's state, and times old, new and detectron2's
FCOS in alternation (old, new, detectron2, old, ...) on the same inputs; printed per assigner:
the minimum and the median of each over ``--rounds`` rounds, detectron2 FCOS's minimum over the
new one's, and whether the two trees' labels, matched GTs and boxes and soft targets are equal::

    git worktree add /tmp/old 7e41295
    OMP_NUM_THREADS=1 python dev/ab_assign.py --old /tmp/old --num-gt 1 --assigners SimOTAAssigner

The old classes run with the old package's own modules (relative imports), on this tree's
priors and predictions; an assigner whose state or inputs changed shape between the trees
cannot be compared so. Nothing in the package reads this; it only measures.
"""

import argparse
import contextlib
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, metavar="CHECKOUT")
    parser.add_argument("--assigners", nargs="+", required=True, metavar="NAME")
    parser.add_argument("--num-gt", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None, help="default: 40 at M <= 10, else 6")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    source = os.path.join(args.old, "dense_assign")
    if not os.path.isdir(source):
        parser.error(f"--old: no dense_assign package in {args.old}")
    rounds = args.rounds or (40 if args.num_gt <= 10 else 6)

    import torch

    from dense_assign.tools.bench import D2_FCOS
    from dense_assign.tools.bench.assign import dense_assign_cases, detectron2_cases
    from dense_assign.tools.bench.data import random_gt

    torch.set_num_threads(args.threads)
    folder = tempfile.mkdtemp(prefix="ab_assign_")
    shutil.copytree(source, os.path.join(folder, "dense_assign_old"))
    sys.path.insert(0, folder)
    try:
        g = torch.Generator().manual_seed(0)
        size = (800, 1333)
        cases = {c.name: c for c in dense_assign_cases(size, "cpu", g)}
        unknown = sorted(set(args.assigners) - set(cases))
        if unknown:
            parser.error(f"--assigners: {', '.join(unknown)} not registered")
        d2 = next(c for c in detectron2_cases(size, "cpu") if c.name == D2_FCOS)
        gt = random_gt(args.num_gt, size, 80, g, (8, 400), "cpu")
        for name in args.assigners:
            case = cases[name]
            new, priors, preds = case.run.__defaults__  # the benchmark binds these
            module = "dense_assign_old" + type(new).__module__[len("dense_assign") :]
            old_cls = getattr(importlib.import_module(module), type(new).__name__)
            old = old_cls.__new__(old_cls)
            old.__dict__.update(new.__dict__)
            runs = {
                "old": lambda: old(priors, gt, predictions=preds, image_size=gt.image_size),
                "new": lambda: new(priors, gt, predictions=preds, image_size=gt.image_size),
                "d2": lambda: d2.run(gt),
            }
            grad = contextlib.nullcontext() if case.prediction_aware else torch.no_grad()
            times = {k: [] for k in runs}
            with grad:
                a, b = runs["old"](), runs["new"]()
                same = all(
                    (x is None) == (y is None) and (x is None or torch.equal(x, y))
                    for x, y in (
                        (a.labels, b.labels),
                        (a.matched_idxs, b.matched_idxs),
                        (a.matched_gt_boxes, b.matched_gt_boxes),
                        (a.cls_targets, b.cls_targets),
                    )
                )
                for _ in range(rounds):
                    for key, fn in runs.items():
                        if key == "d2":
                            with torch.no_grad():
                                start = time.perf_counter()
                                fn()
                        else:
                            start = time.perf_counter()
                            fn()
                        times[key].append(time.perf_counter() - start)
            low = {k: min(v) * 1e3 for k, v in times.items()}
            mid = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(
                f"{name} M={args.num_gt}, {rounds} rounds: min old {low['old']:.2f} / new "
                f"{low['new']:.2f} / detectron2 FCOS {low['d2']:.2f} ms; median {mid['old']:.2f} "
                f"/ {mid['new']:.2f} / {mid['d2']:.2f} ms; detectron2 / new (min) "
                f"{low['d2'] / low['new']:.2f}x; outputs equal: {same}",
                flush=True,
            )
    finally:
        sys.path.remove(folder)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Probe: what ``torch.compile`` does to an assigner's time, before anyone builds on it (issue #20).

Each named assigner is built as the assignment benchmark builds it (``dense_assign.tools.bench``:
its reference config's settings and priors, one 800 x 1333 image, M random GTs, random head outputs
that require grad), timed eagerly, then with its ``assign`` wrapped in
``torch.compile(dynamic=True)``; printed: both times (the minimum over ``--repeats`` calls), the
first compiled call (the compilation), and whether the labels and soft targets equal the eager
ones::

    OMP_NUM_THREADS=1 python dev/compile_probe.py --assigners TaskAlignedAssigner SimOTAAssigner
    OMP_NUM_THREADS=1 python dev/compile_probe.py --pair-iou 400000

``--pair-iou N`` times ``box_ops.pair_iou`` alone on N random box pairs, eager and compiled: one
elementwise function without data-dependent shapes, what a compiled kernel per assigner would be
built from.

Needs a C++ compiler on the CPU (inductor). Nothing in the package compiles: this only measures.
"""

import argparse
import contextlib
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assigners", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--pair-iou", type=int, default=0, metavar="N")
    parser.add_argument("--num-gt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from dense_assign.tools.bench.assign import dense_assign_cases
    from dense_assign.tools.bench.data import random_gt

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    cases = {c.name: c for c in dense_assign_cases((800, 1333), "cpu", g)}
    unknown = sorted(set(args.assigners) - set(cases))
    if unknown:
        parser.error(f"--assigners: {', '.join(unknown)} not registered")
    gt = random_gt(args.num_gt, (800, 1333), 80, g, (8, 400), "cpu")

    def best_ms(fn):
        fn()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1e3

    if args.pair_iou:
        from dense_assign.box_ops import pair_iou

        a, b = (torch.rand(args.pair_iou, 4, generator=g) * 500 for _ in range(2))
        a[:, 2:] += a[:, :2]
        b[:, 2:] += b[:, :2]
        eager_ms = best_ms(lambda: pair_iou(a, b))
        compiled = torch.compile(pair_iou, dynamic=True)
        start = time.perf_counter()
        same = torch.equal(compiled(a, b), pair_iou(a, b))
        first_s = time.perf_counter() - start
        compiled_ms = best_ms(lambda: compiled(a, b))
        print(
            f"pair_iou on {args.pair_iou} pairs: eager {eager_ms:.1f} ms, compiled "
            f"{compiled_ms:.1f} ms (first call {first_s:.0f} s), equal: {same}",
            flush=True,
        )

    for name in args.assigners:
        case = cases[name]
        assigner = case.run.__defaults__[0]  # the benchmark binds (assigner, priors, preds)
        grad = contextlib.nullcontext() if case.prediction_aware else torch.no_grad()
        with grad:
            eager_ms = best_ms(lambda: case.run(gt))
            ref = case.run(gt)
            assigner.assign = torch.compile(assigner.assign, dynamic=True)
            start = time.perf_counter()
            out = case.run(gt)
            first_s = time.perf_counter() - start
            compiled_ms = best_ms(lambda: case.run(gt))
        same = torch.equal(ref.labels, out.labels)
        soft = ""
        if ref.cls_targets is not None:
            diff = (ref.cls_targets - out.cls_targets).abs().max().item()
            soft = f", soft targets differ by at most {diff:.2e}"
        print(
            f"{name} M={args.num_gt}: eager {eager_ms:.1f} ms, compiled {compiled_ms:.1f} ms "
            f"(first call {first_s:.0f} s), labels equal: {same}{soft}",
            flush=True,
        )


if __name__ == "__main__":
    main()

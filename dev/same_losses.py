"""Same-loss check of a refactoring: a few seeded training steps of every synthetic config.

Every config of ``configs/Synthetic-Detection`` is built as it is (R-18 FPN, its assigner, loss
and head), seeded, and trained for a few SGD steps on a fixed batch of random images and boxes (no
dataset on disk). The loss terms of each step are written to a JSON file; ``--compare`` reads two
such files and reports the largest relative difference per config. Used before and after a change
that must not change behaviour (issue #16: "the same losses to 1e-6")::

    OMP_NUM_THREADS=1 python dev/same_losses.py --output /tmp/before.json   # old tree
    OMP_NUM_THREADS=1 python dev/same_losses.py --output /tmp/after.json    # new tree
    python dev/same_losses.py --compare /tmp/before.json /tmp/after.json

The steps run at storage iterations 0, 1 and ``train.max_iter - 1``, so SAPD's phase two (from
half of ``train.max_iter``) is covered.
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs", "Synthetic-Detection")


def _batch(num_classes: int, seed: int = 0):
    import torch
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for h, w, n in ((256, 320, 7), (288, 256, 3)):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 8 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], dim=1)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
        image = torch.rand(3, h, w, generator=g) * 255
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def run_config(path: str, steps):
    import torch
    from detectron2.config import instantiate
    from detectron2.utils.events import EventStorage

    sys.path.insert(0, REPO)
    from dense_assign.engine import load_config

    cfg = load_config(path)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = _batch(int(cfg.model.num_classes))
    out = []
    for it in steps(int(cfg.train.max_iter)):
        with EventStorage(it) as storage:
            storage.iter = it
            losses = model(batch)
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
        out.append({k: float(v.detach()) for k, v in sorted(losses.items())})
    return out


def compare(a_path: str, b_path: str, tol: float) -> int:
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    worst_all, bad = 0.0, []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'the first' if name in a else 'the second'} file")
            bad.append(name)
            continue
        worst = 0.0
        for sa, sb in zip(a[name], b[name]):
            if set(sa) != set(sb):
                print(f"{name}: loss terms differ: {sorted(sa)} vs {sorted(sb)}")
                bad.append(name)
                break
            for k in sa:
                d = abs(sa[k] - sb[k]) / max(abs(sa[k]), 1e-12)
                worst = max(worst, d)
        worst_all = max(worst_all, worst)
        flag = "" if worst <= tol else "  <-- differs"
        if flag:
            bad.append(name)
        print(f"{name:42s} max relative difference {worst:.2e}{flag}")
    print(f"{len(a)} configs, worst {worst_all:.2e}, tolerance {tol:g}: {'FAIL' if bad else 'ok'}")
    return 1 if bad else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", help="JSON file of the loss terms per config and step")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--configs", nargs="*", help="config names (default: all)")
    parser.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare, args.tol)
    if not args.output:
        parser.error("--output or --compare is required")
    paths = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))
    if args.configs:
        paths = [p for p in paths if os.path.basename(p)[:-3] in args.configs]
    results = {}
    for path in paths:
        name = os.path.basename(path)[:-3]
        results[name] = run_config(path, lambda max_iter: (0, 1, max(max_iter - 1, 2)))
        print(name, " ".join(f"{sum(s.values()):.6f}" for s in results[name]), flush=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

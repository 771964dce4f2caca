"""Probe: what SAPD's selection net pays for not keeping its RoIAlign output (issue #20).

Above ``sapd.FSN_KEEP_POOLED_BYTES`` of RoIAlign output the net's autograd graph keeps the means
of pooling again instead of the pooled features, and its backward pass runs the RoIAlign once
more (``FeatureSelectionNet.forward``). This builds the net as the COCO configs do (256 channels,
P3-P7 of an 800 x 1333 image), pools M random GT boxes, and prints, with the bound as it is and
with it lifted (the graph keeps everything): the forward and the backward time of the net (the
minimum over ``--repeats`` calls, the two settings alternating), the peak extra memory of the
forward (what the graph holds when the backward starts), and whether the logits and the weight
gradients are equal bit for bit::

    OMP_NUM_THREADS=1 python dev/fsn_recompute_probe.py --num-gt 1000

Nothing in the package reads this; it only measures.
"""

import argparse
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-gt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    import dense_assign.assigners.sapd as sapd
    from dense_assign.tools.bench.data import random_gt
    from dense_assign.tools.bench.timing import mb, peak_extra_memory

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    net = sapd.FeatureSelectionNet(in_channels=256, num_levels=5)
    strides = [8, 16, 32, 64, 128]
    feats = [torch.randn(1, 256, -(-800 // s), -(-1344 // s), generator=g) for s in strides]
    boxes = random_gt(args.num_gt, (800, 1333), 80, g, (8, 400), "cpu").gt_boxes.tensor
    bound = sapd.FSN_KEEP_POOLED_BYTES
    settings = {f"bound {bound >> 20} MiB (pools again)": bound, "bound lifted (keeps)": 1 << 62}
    times = {name: ([], []) for name in settings}
    results = {}
    for _ in range(args.repeats):
        for name, value in settings.items():
            sapd.FSN_KEEP_POOLED_BYTES = value
            net.zero_grad()
            start = time.perf_counter()
            logits = net(feats, boxes, strides)
            mid = time.perf_counter()
            logits.sum().backward()
            end = time.perf_counter()
            times[name][0].append(mid - start)
            times[name][1].append(end - mid)
            results[name] = (logits.detach(), [p.grad.clone() for p in net.parameters()])
    for name, value in settings.items():
        sapd.FSN_KEEP_POOLED_BYTES = value
        peak = peak_extra_memory(lambda: net(feats, boxes, strides), "cpu")
        fwd, bwd = (min(t) * 1e3 for t in times[name])
        print(
            f"M={args.num_gt}, {name}: forward {fwd:.0f} ms, backward {bwd:.0f} ms, "
            f"peak extra memory of the forward {mb(peak):.1f} MB",
            flush=True,
        )
    sapd.FSN_KEEP_POOLED_BYTES = bound
    (a_logits, a_grads), (b_logits, b_grads) = results.values()
    same = torch.equal(a_logits, b_logits) and all(map(torch.equal, a_grads, b_grads))
    print(f"logits and weight gradients equal bit for bit: {same}", flush=True)


if __name__ == "__main__":
    main()

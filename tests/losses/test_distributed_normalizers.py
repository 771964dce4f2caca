"""Multi-process readiness of every method's losses, on the CPU (2 processes over gloo).

DistributedDataParallel averages the gradients of the processes. With a total batch split over N
processes, training equals one process on the whole batch when the per-process losses *average*
to the one-process loss, and so do their gradients. The sums of the losses are per process; what
makes the average right is the normalizers: FCOS / ATSS / Pseudo-IoU's #positives, SAPD's sum of
the positives' weights and the centerness sums (``DenseLoss``, ``normalizer="num_pos"``) and
AutoAssign's #GT and center-prior sum (``AutoAssignLoss``) are all-reduced and divided by N, so
that each process divides its sum by the global count / N.

For every method config (``METHOD_CONFIGS``, thinned), one model with fixed weights and a batch of
4 images: the losses and all parameter gradients of one process on the 4 images, and of each of 2
processes on 2 of them (one ``spawn`` for all methods); the mean over the processes must equal the
one-process value, loss by loss and parameter by parameter.

Exceptions, checked as what they are:

- ``normalizer="ema"`` (RetinaNet, IoU-aware RetinaNet; detectron2's RetinaNet): the moving
  average of the positive count is per process, not all-reduced (as in detectron2), so each
  process's losses equal one process's on its own half of the batch; with ``num_pos`` instead,
  those methods pass the DDP check above.
- BatchNorm (the synthetic configs' backbone) normalizes with per-process batch statistics; its
  layers run in eval mode here (the statistics are not what is tested).
"""

import math
import os
from pathlib import Path

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage
from torch import nn

import dense_assign.modeling  # noqa: F401
from dense_assign.model_zoo import basic_resnet_stages

from ..helpers import random_batch
from ..reliability_helpers import METHOD_CONFIGS, load_method_config, method_id

WORLD = 2
NUM_IMAGES = 4
IMAGE_SIZE = (128, 160)  # a multiple of 32: padded alike in one batch or in two
#: Relative tolerance of the losses and of each parameter's gradient (float32 sums in another
#: order; measured: losses 2e-7, gradients 1.5e-5 at most).
RTOL = 1e-4

SAPD = "configs/Synthetic-Detection/sapd_R_18_FPN.py"
EMA_METHODS = ("retinanet_R_18_FPN", "iou_aware_retinanet_R_18_FPN")


def _cases():
    """{case id: (config path, config overrides, EventStorage iteration or "last")}."""
    cases = {method_id(p): (p, {}, 0) for p in METHOD_CONFIGS}
    # SAPD: iteration 0 is phase one (one-hot levels); the last iteration is phase two (levels
    # weighted by the feature selection net, soft weights in the normalizer)
    cases["sapd_R_18_FPN-phase2"] = (SAPD, {}, "last")
    for name in EMA_METHODS:
        path = cases[name][0]
        cases[f"{name}-num_pos"] = (path, {"loss.normalizer": "num_pos"}, 0)
    return cases


CASES = _cases()


def _config(case: str):
    path, overrides, iteration = CASES[case]
    cfg = load_method_config(path, channels=32)
    m = cfg.model
    # a quarter of ResNet-18's channels (the converging benchmark's backbone): small gradients
    width = 16
    m.backbone.bottom_up.stem.out_channels = width
    m.backbone.bottom_up.stages = L(basic_resnet_stages)(depth=18, width=width, norm="BN")
    if m.backbone.top_block.get("in_feature", "res5") == "res5":
        m.backbone.top_block.in_channels = 8 * width
    for key, value in overrides.items():
        node, name = m, key.split(".")
        for part in name[:-1]:
            node = node[part]
        node[name[-1]] = value
    if iteration == "last":
        iteration = int(cfg.train.max_iter) - 1
    return cfg, iteration


def _batch(num_classes: int):
    return random_batch(NUM_IMAGES, IMAGE_SIZE, num_boxes=4, num_classes=num_classes, seed=0)


def _losses_and_grads(model, batch, iteration):
    """Loss values and the gradient of their sum for every parameter (zeros where unused), with
    a fresh EMA state and BatchNorm on its running statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    model.zero_grad(set_to_none=True)
    with EventStorage(iteration):
        losses = model(batch)
    sum(losses.values()).backward()
    grads = {
        name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for name, p in model.named_parameters()
    }
    return {k: float(v.detach()) for k, v in losses.items()}, grads


def _run_case(case, weights_file, images):
    cfg, iteration = _config(case)
    model = instantiate(cfg.model)
    model.load_state_dict(torch.load(weights_file))  # the EMA buffers start unset (NaN)
    batch = _batch(cfg.model.num_classes)
    return _losses_and_grads(model, [batch[i] for i in images], iteration)


def _worker(rank, init_file, work_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        per = NUM_IMAGES // WORLD
        images = list(range(rank * per, (rank + 1) * per))
        results = {c: _run_case(c, Path(work_dir) / f"{c}.pt", images) for c in CASES}
        torch.save(results, Path(work_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case: {"one": (losses, grads), "halves": [...], "ranks": [...]}}: one process on the
    whole batch and on each half (no process group), and each of the 2 gloo processes."""
    import torch.multiprocessing as mp

    work = tmp_path_factory.mktemp("distributed_normalizers")
    for case in CASES:
        cfg, _ = _config(case)
        torch.manual_seed(0)
        torch.save(instantiate(cfg.model).state_dict(), work / f"{case}.pt")
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the spawned processes inherit it
    try:
        procs = mp.start_processes(
            _worker, args=(str(work / "init"), str(work)), nprocs=WORLD, join=False
        )
    finally:
        if old is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = old
    # the one-process references while the processes start and run
    per = NUM_IMAGES // WORLD
    halves = [list(range(r * per, (r + 1) * per)) for r in range(WORLD)]
    out = {}
    try:
        for case in CASES:
            weights = work / f"{case}.pt"
            out[case] = {"one": _run_case(case, weights, list(range(NUM_IMAGES)))}
            if _config(case)[0].model.loss.get("normalizer", None) == "ema":
                out[case]["halves"] = [_run_case(case, weights, h) for h in halves]
    finally:
        while not procs.join():  # raises if a process failed
            pass
    for rank in range(WORLD):
        for case, result in torch.load(work / f"rank{rank}.pt").items():
            out[case].setdefault("ranks", []).append(result)
    return out


def _max_relative_differences(expected, actual):
    """(largest relative difference of a loss, of a parameter's gradient (by norm)) of
    ``actual`` = (losses, grads) against ``expected``, after checking the names match."""
    (losses_e, grads_e), (losses_a, grads_a) = expected, actual
    assert sorted(losses_e) == sorted(losses_a)
    assert sorted(grads_e) == sorted(grads_a)
    loss_diff = max(abs(losses_a[k] - v) / max(abs(v), 1e-12) for k, v in losses_e.items())
    total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads_e.values()))
    grad_diff = 0.0
    for name, g in grads_e.items():
        # relative to the parameter's own gradient, with a floor of 1e-3 of the whole gradient
        # for parameters that get next to none
        scale = max(float(g.norm()), 1e-3 * total)
        grad_diff = max(grad_diff, float((grads_a[name] - g).norm()) / scale)
    return loss_diff, grad_diff


def _mean(results):
    losses = {k: sum(r[0][k] for r in results) / len(results) for k in results[0][0]}
    grads = {k: sum(r[1][k] for r in results) / len(results) for k in results[0][1]}
    return losses, grads


def _check_loss_values(result, case):
    losses, grads = result
    assert all(math.isfinite(v) for v in losses.values()), (case, losses)
    # positives in the batch (else the normalizers would sit at their floor)
    assert losses.get("loss_box_reg", losses.get("loss_pos", 0.0)) > 0, (case, losses)
    assert any(float(g.abs().sum()) > 0 for g in grads.values()), case


@pytest.mark.parametrize("case", [c for c in CASES if c not in EMA_METHODS])
def test_two_processes_average_to_one_process_losses_and_gradients(runs, case):
    r = runs[case]
    _check_loss_values(r["one"], case)
    loss_diff, grad_diff = _max_relative_differences(r["one"], _mean(r["ranks"]))
    print(
        f"{case}: max relative difference of the losses {loss_diff:.2e}, gradients {grad_diff:.2e}"
    )
    assert loss_diff < RTOL, (case, r["one"][0], [x[0] for x in r["ranks"]])
    assert grad_diff < RTOL, case


@pytest.mark.parametrize("case", EMA_METHODS)
def test_ema_normalizer_is_per_process(runs, case):
    """detectron2's EMA normalizer follows each process's own positive count: process r's losses
    and gradients are one process's on the images of process r."""
    r = runs[case]
    _check_loss_values(r["one"], case)
    for rank in range(WORLD):
        loss_diff, grad_diff = _max_relative_differences(r["halves"][rank], r["ranks"][rank])
        print(
            f"{case} rank {rank}: max relative difference to one process on its half "
            f"{loss_diff:.2e} (losses), {grad_diff:.2e} (gradients)"
        )
        assert loss_diff < RTOL and grad_diff < RTOL, (case, rank)
    loss_diff, grad_diff = _max_relative_differences(r["one"], _mean(r["ranks"]))
    print(
        f"{case}: mean of 2 processes vs one process {loss_diff:.2e} (losses), "
        f"{grad_diff:.2e} (gradients)"
    )

"""Reliability and scale, the slow part (``make test-long``; all marked ``long``).

* every method config: one full forward / backward of the model at 800 x 1333 with 1000 boxes;
* every method config trained on the crowded synthetic data (``synthetic_crowded``, 100-400
  objects an image) for ``$DENSE_ASSIGN_CROWDED_ITERS`` iterations (default 300) with finite
  losses and a final evaluation;
* ``kill -9`` during training, then ``--resume``: the losses after resuming are the
  uninterrupted run's, bit for bit (CPU, fixed seed);
* two processes over gloo give one process's losses (same total batch; relative tolerance
  1e-5), and ``--eval-only`` over two processes gives the single-process detections and AP;
* a diverging run (learning rate 1e30) stops with a message, in one process and in two; a NaN
  loss in one of two processes stops both, each naming the loss and the process.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401

from ..helpers import REPO, TINY_CONFIG, TRAIN_NET, assert_ok, run_train_net
from ..reliability_helpers import (
    CROWDED_BOXES,
    CROWDED_IMAGE,
    METHOD_CONFIGS,
    crowded_gt,
    load_method_config,
    losses_by_iteration,
    method_id,
    peak_rss_increase_mb,
)

pytestmark = pytest.mark.long

#: Iterations of each crowded training run (a few hundred for the real check).
CROWDED_ITERS = int(os.environ.get("DENSE_ASSIGN_CROWDED_ITERS", "300"))
#: Peak memory a full forward / backward of one crowded 800 x 1333 image may add (ResNet-18 FPN).
FULL_MODEL_MEMORY_MB = 3072
#: Relative difference allowed between the losses of 1 and 2 processes (sums in another order).
PROCESSES_RTOL = 1e-5
TINY_DDP_CONFIG = REPO / "tests" / "configs" / "tiny_fcos_ddp.py"


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    return tmp_path_factory.mktemp("detectron2_datasets")


# ================================================================================ crowded
@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_crowded_image_full_model_forward_backward(path):
    torch.manual_seed(0)
    model = instantiate(load_method_config(path).model).train()
    gt = crowded_gt()
    assert len(gt) == CROWDED_BOXES

    def step():
        batch = [{"image": torch.rand(3, *CROWDED_IMAGE) * 255, "instances": gt}]
        with EventStorage():
            losses = model(batch)
        sum(losses.values()).backward()
        return losses

    losses, peak_mb = peak_rss_increase_mb(step)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if peak_mb is not None:
        assert peak_mb < FULL_MODEL_MEMORY_MB, f"{peak_mb:.0f} MB"


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_train_every_method_on_crowded_data(path, tmp_path, datasets_root):
    out = tmp_path / method_id(path)
    proc = run_train_net(
        [
            f"train.output_dir={out}",
            "dataloader.train.dataset.names=synthetic_crowded_train",
            "dataloader.test.dataset.names=synthetic_crowded_val",
            f"train.max_iter={CROWDED_ITERS}",
            f"train.checkpointer.period={max(CROWDED_ITERS, 1)}",
            f"train.log_period={min(20, max(CROWDED_ITERS // 5, 1))}",
            "train.vis_predictions=0",
            "train.seed=0",
        ],
        datasets_root,
        config=REPO / path,
        timeout=max(1800, 12 * CROWDED_ITERS),
        env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    assert_ok(proc)  # the trainer stops on any non-finite loss, so this covers every iteration
    logged = losses_by_iteration(out)
    assert logged and max(logged) == CROWDED_ITERS - 1
    for it, losses in logged.items():
        assert all(math.isfinite(v) for v in losses.values()), (it, losses)
    with open(out / "final_results.json") as f:
        results = json.load(f)["bbox"]
    # evaluated (AP is null when a short run detects nothing above the score threshold)
    assert {"AP", "AP50", "AP75"} <= set(results)
    assert all(v is None or math.isfinite(v) for v in results.values())


# ================================================================================ kill -9, resume
def test_kill_9_then_resume_gives_the_uninterrupted_losses(tmp_path, datasets_root):
    common = [
        "train.max_iter=10",
        "train.checkpointer.period=2",
        "train.metrics_window=1",
        "train.eval_period=0",
        "train.seed=0",
    ]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert_ok(run_train_net(common + [f"train.output_dir={full}"], datasets_root))

    env = dict(os.environ, OMP_NUM_THREADS="1", DETECTRON2_DATASETS=str(datasets_root))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TRAIN_NET),
            "--config-file",
            str(TINY_CONFIG),
            *common,
            f"train.output_dir={killed}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tag = killed / "last_checkpoint"
    deadline = time.time() + 300

    def saved_iteration():
        match = re.fullmatch(r"model_(\d{7})\.pth", tag.read_text()) if tag.exists() else None
        return int(match.group(1)) if match else -1

    try:
        while saved_iteration() < 3:  # kill after the second checkpoint (iterations 1 and 3)
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    start = saved_iteration() + 1
    assert 4 <= start < 10, "killed too late to test anything"

    assert_ok(run_train_net(["--resume", *common, f"train.output_dir={killed}"], datasets_root))
    log = (killed / "log.txt").read_text()
    assert f"Starting training from iteration {start}" in log
    a, b = losses_by_iteration(full), losses_by_iteration(killed)
    assert sorted(a) == list(range(10))
    for it in range(start, 10):
        assert b[it] == a[it], it
    wa = torch.load(full / "model_final.pth", weights_only=True)["model"]
    wb = torch.load(killed / "model_final.pth", weights_only=True)["model"]
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=0, equal_nan=True) for k in wa)


# ================================================================================ processes
def _predictions(output_dir):
    with open(output_dir / "inference" / "coco_instances_results.json") as f:
        preds = json.load(f)
    return sorted(preds, key=lambda p: (p["image_id"], -p["score"], p["category_id"], p["bbox"]))


def test_two_processes_equal_one_process_training_and_evaluation(tmp_path, datasets_root):
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"train_{n}"
        assert_ok(
            run_train_net(
                [
                    "--num-gpus",
                    n,
                    "--dist-url",
                    "auto",
                    f"train.output_dir={out}",
                    "train.max_iter=5",
                    "train.metrics_window=1",
                    "train.seed=0",
                ],
                datasets_root,
                config=TINY_DDP_CONFIG,
                timeout=600,
            )
        )
        runs[n] = losses_by_iteration(out)
    assert sorted(runs[1]) == sorted(runs[2]) == list(range(5))
    for it in range(5):
        for name, value in runs[1][it].items():
            assert runs[2][it][name] == pytest.approx(value, rel=PROCESSES_RTOL), (it, name)

    # distributed evaluation of one checkpoint = single-process evaluation
    checkpoint = tmp_path / "train_1" / "model_final.pth"
    evals = {}
    for n in (1, 2):
        out = tmp_path / f"eval_{n}"
        assert_ok(
            run_train_net(
                [
                    "--eval-only",
                    "--num-gpus",
                    n,
                    "--dist-url",
                    "auto",
                    f"train.output_dir={out}",
                    f"train.init_checkpoint={checkpoint}",
                ],
                datasets_root,
                config=TINY_DDP_CONFIG,
                timeout=600,
            )
        )
        with open(out / "eval_results.json") as f:
            evals[n] = (json.load(f), _predictions(out))
    (results_1, preds_1), (results_2, preds_2) = evals[1], evals[2]
    assert preds_1, "no detections: the comparison would prove nothing"
    assert len(preds_1) == len(preds_2)
    for p, q in zip(preds_1, preds_2):
        assert (p["image_id"], p["category_id"]) == (q["image_id"], q["category_id"])
        assert p["score"] == pytest.approx(q["score"], rel=1e-5)
        assert p["bbox"] == pytest.approx(q["bbox"], rel=1e-5, abs=1e-4)
    assert results_1 == results_2


# ================================================================================ divergence
@pytest.mark.parametrize("processes", [1, 2])
def test_diverging_training_stops_with_a_message(processes, tmp_path, datasets_root):
    proc = run_train_net(
        [
            "--num-gpus",
            processes,
            "--dist-url",
            "auto",
            "optimizer.lr=1e30",
            f"train.output_dir={tmp_path}",
        ],
        datasets_root,
        timeout=600,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Non-finite box outputs of the head at iteration 1" in output or (
        "Non-finite loss at iteration" in output
    ), output[-4000:]


def _nan_in_one_process(rank, init_file, results):
    import torch.distributed as dist

    from dense_assign.engine import NonFiniteLossError, check_losses_finite

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    losses = {"loss_cls": torch.tensor(0.5), "loss_box_reg": torch.tensor(0.25)}
    check_losses_finite(losses, iteration=3)  # all finite: passes in both
    if rank == 1:
        losses["loss_box_reg"] = torch.tensor(float("nan"))
    try:
        check_losses_finite(losses, iteration=4)
        results[rank] = "no error"
    except NonFiniteLossError as e:
        results[rank] = str(e)
    dist.destroy_process_group()


def test_nan_loss_in_one_process_stops_every_process(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_nan_in_one_process, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    for rank in (0, 1):
        assert (
            "Non-finite loss at iteration 4: loss_box_reg=nan (process 1)" in results[rank]
        ), results

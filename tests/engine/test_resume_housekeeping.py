"""What ``--resume`` leaves in the output folder, and the ETA of the log line (issue #22).

* after an interruption and ``--resume``, ``metrics.json`` has one entry per iteration (the
  entries the interrupted run wrote after its last checkpoint are dropped), TensorBoard shows one
  value per step, and ``train.checkpointer.max_to_keep`` counts the checkpoints of the interrupted
  run;
* the ETA is the median of the recent iteration times (not of all of them) times the iterations
  left, plus the evaluations left at the cost of the last one.
"""

import json
import logging
import os
import re
import time

import pytest
import torch
from detectron2.engine import hooks
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign import engine
from dense_assign.engine import trainer as trainer_mod
from dense_assign.engine.checkpoint import AtomicCheckpointer

from ..helpers import TINY_CONFIG, read_metrics
from ..reliability_helpers import CrashAfter, SimulatedCrash

# ========================================================================= resume housekeeping


MAX_ITER = 8


def _cfg(output_dir):
    cfg = engine.load_config(
        str(TINY_CONFIG),
        [
            f"train.output_dir={output_dir}",
            f"train.max_iter={MAX_ITER}",
            "train.checkpointer.period=2",
            "train.checkpointer.max_to_keep=2",
            "train.log_period=1",
            "train.metrics_window=1",
            "train.eval_period=0",
        ],
    )
    cfg.dataloader.evaluator = None
    return cfg


def _tensorboard_steps(output_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(output_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)]


def test_resume_writes_each_iteration_once_and_keeps_max_to_keep_checkpoints(
    tmp_path, synthetic_datasets, monkeypatch
):
    out = tmp_path / "run"
    engine.prepare_datasets(_cfg(out))
    # The interrupted run: checkpoints after iterations 1 and 3, metrics up to iteration 4.
    build_hooks = trainer_mod.build_hooks
    monkeypatch.setattr(
        trainer_mod, "build_hooks", lambda *a, **k: build_hooks(*a, **k) + [CrashAfter(4)]
    )
    with pytest.raises(SimulatedCrash):
        engine.do_train(_cfg(out))
    monkeypatch.setattr(trainer_mod, "build_hooks", build_hooks)
    assert (out / "last_checkpoint").read_text() == "model_0000003.pth"
    assert sorted(p.name for p in out.glob("model_*.pth")) == [
        "model_0000001.pth",
        "model_0000003.pth",
    ]
    interrupted = [m["iteration"] for m in read_metrics(out) if "total_loss" in m]
    assert interrupted == [0, 1, 2, 3, 4]  # iteration 4 is trained again by the resumed run

    engine.do_train(_cfg(out), resume=True)

    iterations = [m["iteration"] for m in read_metrics(out) if "total_loss" in m]
    assert iterations == list(range(MAX_ITER)), iterations  # once each, in order
    # max_to_keep=2 counts the interrupted run's checkpoints: 5 and 7 (and model_final) remain.
    assert sorted(p.name for p in out.glob("model_*.pth")) == [
        "model_0000005.pth",
        "model_0000007.pth",
        "model_final.pth",
    ]
    assert not list(out.glob("*.tmp-*"))
    # TensorBoard: the resumed run's events file hides the interrupted run's step 4.
    assert len(list(out.glob("events.out.tfevents.*"))) == 2
    assert _tensorboard_steps(out, "total_loss") == list(range(MAX_ITER))


def test_max_to_keep_counts_older_checkpoints_only(tmp_path):
    """Checkpoints of iterations at or after the start (a fresh run in a used folder, one that
    resumes from an older checkpoint) are not counted: the run writes them again."""
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    for it in (1, 3, 5, 7, 9):
        checkpointer.save(f"model_{it:07d}", iteration=it)
    checkpointer.save("model_final", iteration=9)
    hook = trainer_mod.RetainingPeriodicCheckpointer(checkpointer, period=2, max_to_keep=2)
    hook.trainer = type("T", (), {"start_iter": 6, "max_iter": 20})()
    hook.before_train()
    names = sorted(p.name for p in tmp_path.glob("model_*.pth"))
    assert names == ["model_0000003.pth", "model_0000005.pth", "model_0000007.pth"] + [
        "model_0000009.pth",
        "model_final.pth",
    ]
    assert [os.path.basename(p) for p in hook.recent_checkpoints] == [
        "model_0000003.pth",
        "model_0000005.pth",
    ]


def test_drop_metrics_from_is_atomic_and_drops_a_cut_line(tmp_path):
    from dense_assign.engine.writers import drop_metrics_from

    path = tmp_path / "metrics.json"
    lines = [json.dumps({"iteration": i, "total_loss": 1.0 / (i + 1)}) for i in range(6)]
    path.write_text("\n".join(lines) + '\n{"iteration": 6, "total_lo')  # cut by kill -9
    inode = path.stat().st_ino
    assert drop_metrics_from(str(path), 3) == (4, 3)  # iterations 3, 4, 5 and the cut line
    assert path.read_text() == "\n".join(lines[:3]) + "\n"
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert drop_metrics_from(str(path), 3) == (0, None)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_drop_metrics_keeps_the_final_evaluation_of_a_finished_run(tmp_path):
    """A run of max_iter=3 logs its final evaluation at iteration 3 (after_train); a longer run
    resumed from it starts at iteration 3 and keeps that entry."""
    from dense_assign.engine.writers import drop_metrics_from

    path = tmp_path / "metrics.json"
    lines = [json.dumps({"iteration": i, "total_loss": 1.0, "lr": 0.1}) for i in range(3)]
    lines.append(json.dumps({"iteration": 3, "bbox/AP": 12.5}))
    path.write_text("\n".join(lines) + "\n")
    assert drop_metrics_from(str(path), 3) == (0, None)
    assert path.read_text() == "\n".join(lines) + "\n"
    assert drop_metrics_from(str(path), 2) == (2, 2)  # an interrupted longer run: redone


# ========================================================================================= ETA
def _writer_hook(cfg, tmp_path, eval_function):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    hook_list = trainer_mod.build_hooks(cfg, checkpointer, eval_function)
    writer = next(h for h in hook_list if isinstance(h, hooks.PeriodicWriter))
    evaluator = next(h for h in hook_list if isinstance(h, hooks.EvalHook))
    return writer._writers[0], evaluator


def _eta_cfg(tmp_path, eval_period):
    return engine.load_config(
        str(TINY_CONFIG),
        [f"train.output_dir={tmp_path}", "train.max_iter=1000", f"train.eval_period={eval_period}"],
    )


def _fill(storage, times):
    for i, t in enumerate(times):
        storage.iter = i
        storage.put_scalars(time=t, total_loss=1.0)


def test_eta_follows_the_recent_iterations(tmp_path, caplog):
    """200 slow iterations (10 s: the machine was busy), then 60 fast ones (0.1 s): the ETA at
    iteration 259 is 740 fast iterations (74 s), not detectron2's median over all 260 (10 s an
    iteration: 2 hours)."""
    printer, _ = _writer_hook(_eta_cfg(tmp_path, 0), tmp_path, lambda: {})
    with EventStorage() as storage, caplog.at_level(logging.INFO):
        _fill(storage, [10.0] * 200 + [0.1] * 60)
        printer.write()
        eta = storage.history("eta_seconds").latest()
    assert eta == pytest.approx(0.1 * (1000 - 259 - 1), rel=1e-6)
    lines = [r.getMessage() for r in caplog.records if "iter: 259" in r.getMessage()]
    assert len(lines) == 1
    # detectron2's log line, with the new ETA.
    assert re.match(r" eta: 0:01:14  iter: 259  total_loss: 1  time: \d", lines[0]), lines[0]


def test_eta_counts_the_evaluations_left(tmp_path):
    """With train.eval_period=100 and max_iter 1000, after iteration 259 the evaluations after
    iterations 299, 399, ..., 899 and after the last one are left (8); each costs what the last
    evaluation took."""
    printer, evaluator = _writer_hook(
        _eta_cfg(tmp_path, 100), tmp_path, lambda: time.sleep(0.2) or {}
    )
    with EventStorage() as storage:
        _fill(storage, [0.01] * 260)
        printer.write()  # no evaluation yet: its cost is unknown, not counted
        assert storage.history("eta_seconds").latest() == pytest.approx(7.4, rel=1e-6)
        start = time.perf_counter()
        evaluator._func()  # the evaluation EvalHook runs (timed)
        cost = time.perf_counter() - start
        printer.write()
        eta = storage.history("eta_seconds").latest()
    assert eta == pytest.approx(7.4 + 8 * cost, abs=8 * 0.01)
    assert eta > 7.4 + 8 * 0.19


@pytest.mark.parametrize("max_iter,period", [(1000, 100), (60, 30), (60, 20), (7, 3), (10, 0)])
def test_remaining_evaluations_match_eval_hook(max_iter, period):
    from dense_assign.engine.writers import remaining_evaluations

    def evaluated_after(iteration):  # EvalHook: after_step, then after_train
        count = 0
        for it in range(iteration + 1, max_iter):
            if period > 0 and (it + 1) % period == 0 and it + 1 != max_iter:
                count += 1
        return count + 1

    for iteration in range(max_iter):
        assert remaining_evaluations(iteration, max_iter, period) == evaluated_after(iteration)

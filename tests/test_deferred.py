"""The training step's host reads, deferred to one copy per step (dense_assign.deferred).

On a GPU the project's trainers queue the checks (finite box outputs, valid GT) and the logged
scalars of a step and read them with the losses, before the optimizer step. Without a GPU the
same path runs with ``cpu_too`` / ``Trainer.defer_cpu_reads``: these tests check that it keeps
every guarantee of the immediate path (same errors, same messages, same logged values).
"""

import itertools

import pytest
import torch
from detectron2.engine import HookBase
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign import deferred, engine
from dense_assign.meta_arch import NonFinitePredictionError

from .helpers import TINY_CONFIG, random_batch
from .reliability_helpers import METHOD_CONFIGS, load_method_config, method_id


def test_checks_and_scalars_wait_for_the_read_inside_a_step():
    with EventStorage(3) as storage:
        with deferred.training_step(cpu_too=True):
            deferred.put_scalar("x", torch.tensor(2.5))
            deferred.check(torch.tensor(False), lambda: ValueError("bad flag"))
            assert "x" not in storage.histories()  # queued, not read
            with pytest.raises(ValueError, match="bad flag"):
                deferred.read_step_values({"loss_a": torch.tensor(1.0)})
        # outside a step: at once
        deferred.put_scalar("y", torch.tensor(1.5))
        assert storage.history("y").latest() == 1.5
        with pytest.raises(ValueError, match="now"):
            deferred.check(torch.tensor(False), lambda: ValueError("now"))


def test_read_step_values_returns_cpu_losses_and_stores_scalars():
    with EventStorage(0) as storage:
        with deferred.training_step(cpu_too=True):
            deferred.put_scalar("s", torch.tensor(4.0))
            deferred.check(torch.tensor(True), lambda: AssertionError("not raised"))
            out = deferred.read_step_values({"a": torch.tensor(0.5, requires_grad=True) * 2})
            assert storage.history("s").latest() == 4.0
    assert set(out) == {"a"} and out["a"].device.type == "cpu" and float(out["a"]) == 1.0
    assert not out["a"].requires_grad


def test_a_failed_check_replaces_the_error_it_caused():
    with EventStorage(0):
        with pytest.raises(ValueError, match="the cause") as info:
            with deferred.training_step(cpu_too=True):
                deferred.check(torch.tensor(False), lambda: ValueError("the cause"))
                raise RuntimeError("an assigner failing on NaN boxes")
    assert isinstance(info.value.__cause__, RuntimeError)
    # no failed check: the original error, and nothing left queued for the next step
    with EventStorage(0):
        with pytest.raises(RuntimeError, match="original"):
            with deferred.training_step(cpu_too=True):
                deferred.check(torch.tensor(True), lambda: ValueError("not this"))
                raise RuntimeError("original")
        assert not deferred._checks and not deferred._scalars


def _run(cfg, deferred_reads: bool, iters: int, break_bias_at=None):
    torch.manual_seed(0)
    model = engine.build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = itertools.cycle([random_batch(num_images=2, num_classes=7, seed=s) for s in range(2)])
    trainer = engine.build_trainer(cfg, model, batches, optimizer)
    trainer.defer_cpu_reads = deferred_reads

    class BreakBias(HookBase):
        def before_step(self):
            if self.trainer.iter == break_bias_at:
                with torch.no_grad():
                    model.head.bbox_pred.bias.fill_(float("nan"))

    trainer.register_hooks([BreakBias()])
    return trainer, model


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_deferred_reads_log_the_same_values_as_immediate_ones(path):
    """Every method: two steps log the same scalars (assign/*, assigner/*, losses, ...) with the
    reads deferred as with the reads made at once, and train the same weights."""
    cfg = load_method_config(path, channels=32)
    cfg.train.device = "cpu"
    histories, weights = [], []
    for deferred_reads in (False, True):
        trainer, model = _run(cfg, deferred_reads, 2)
        trainer.train(0, 2)
        h = trainer.storage.histories()
        histories.append({k: [v for v, _ in h[k].values()] for k in h if k not in ("lr",)})
        weights.append([p.detach().clone() for p in model.parameters()])
    immediate, late = histories
    timing = {"time", "data_time", "rank_data_time"}
    assert set(immediate) == set(late)
    for name in set(immediate) - timing:
        assert late[name] == pytest.approx(immediate[name], rel=1e-5, abs=1e-7), name
    assert any(k.startswith("assign/") for k in immediate)
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_diverged_box_outputs_stop_before_the_optimizer_step_when_deferred():
    cfg = engine.load_config(str(TINY_CONFIG))
    trainer, model = _run(cfg, True, 4, break_bias_at=2)
    before = {}

    class Snapshot(HookBase):
        def after_step(self):
            before.update({k: v.detach().clone() for k, v in model.named_parameters()})

    trainer.register_hooks([Snapshot()])
    with pytest.raises(NonFinitePredictionError, match="Non-finite box outputs of the head at "):
        trainer.train(0, 4)
    assert trainer.iter == 2
    changed = [
        k
        for k, v in model.named_parameters()
        if not torch.equal(v, before[k]) and k != "head.bbox_pred.bias"
    ]
    assert not changed, changed  # no optimizer step in the failing iteration


def test_deferred_ground_truth_check_names_the_image():
    cfg = engine.load_config(str(TINY_CONFIG))
    model = engine.build_model(cfg).train()
    batch = random_batch(num_images=2, num_classes=7)
    batch[1]["file_name"] = "broken.jpg"
    batch[1]["instances"].gt_classes[0] = 99
    # queued, then raised either by the read or, when a class id 99 makes the loss fail first,
    # in place of that failure
    with EventStorage(0), pytest.raises(ValueError, match=r"broken.jpg: class ids \[99\]"):
        with deferred.training_step(cpu_too=True):
            deferred.read_step_values(model(batch))

"""Reliability and scale (fast part; the slow runs are in tests/integration/test_reliability_long.py).

* crowded images: 1000 GT boxes on an 800 x 1333 image through every method's assigner and loss
  (the head on random FPN features: the backbone adds nothing to what is tested here);
* training stability: a non-finite loss stops training naming the iteration and the loss, for
  every method's loss dict; diverged box outputs stop it before they reach an assigner; gradient
  clipping (``train.clip_grad``), also under AMP (CUDA only);
* crash and ``--resume``: the resumed run has the uninterrupted run's losses and weights;
  checkpoints are written atomically; the training data stream is a function of (seed,
  iteration), the same for any number of workers and split exactly over processes.
"""

import itertools
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign import engine
from dense_assign.engine import data as data_mod
from dense_assign.engine import trainer as trainer_mod
from dense_assign.engine.checkpoint import TMP_MARK, AtomicCheckpointer
from dense_assign.meta_arch import NonFinitePredictionError
from dense_assign.registry import ASSIGNER_REGISTRY

from ..helpers import TINY_CONFIG, random_batch
from ..reliability_helpers import (
    CROWDED_BOXES,
    CROWDED_IMAGE,
    METHOD_CONFIGS,
    CrashAfter,
    SimulatedCrash,
    crowded_gt,
    fpn_feature_sizes,
    load_method_config,
    losses_by_iteration,
    method_id,
    peak_rss_increase_mb,
)

#: Peak memory that one crowded image (assignment + loss + backward of a 32-channel head) may add.
CROWDED_MEMORY_MB = 1024


# ================================================================================ crowded images
def test_method_configs_cover_every_registered_assigner():
    def targets(node):  # the assigner and those nested in it (a PhasedAssigner's phases)
        if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
            return set().union(*(targets(x) for x in node)) if len(node) else set()
        if not hasattr(node, "keys"):
            return set()
        found = {node["_target_"].__name__} if "_target_" in node else set()
        return found.union(*(targets(node[k]) for k in node.keys() if k != "_target_"))

    used = set()
    for path in METHOD_CONFIGS:
        used |= targets(load_method_config(path).model.assigner)
    registered = {name for name, _ in ASSIGNER_REGISTRY}
    # InsideBoxAssigner: af_baseline; MaxIoUAssigner: retinanet and iou_aware_retinanet;
    # TaskAlignedAssigner: a phase of tood's PhasedAssigner
    assert registered <= used, registered - used


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_crowded_image_through_assigner_and_loss(path):
    channels = 32
    torch.manual_seed(0)
    model = instantiate(load_method_config(path, channels=channels).model).train()
    gt = crowded_gt()
    assert len(gt) == CROWDED_BOXES

    def step():
        features = [torch.randn(1, channels, h, w) for h, w in fpn_feature_sizes(CROWDED_IMAGE)]
        predictions = model.head(features)
        images = SimpleNamespace(image_sizes=[CROWDED_IMAGE])
        with EventStorage() as storage:
            losses = model.forward_training(images, features, predictions, [gt])
        sum(losses.values()).backward()
        return losses, storage

    (losses, storage), peak_mb = peak_rss_increase_mb(step)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    grads = [p.grad for p in model.head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # most GTs get positives (some are cut down to slivers by the border)
    stats = {k: v.latest() for k, v in storage.histories().items()}
    assert stats["assign/gt_without_pos_frac"] < 0.5, stats
    if peak_mb is not None:
        assert peak_mb < CROWDED_MEMORY_MB, f"{peak_mb:.0f} MB for one crowded image"


# ================================================================================ stability
@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_non_finite_loss_is_named_for_every_loss_of_every_method(path):
    torch.manual_seed(0)
    model = instantiate(load_method_config(path, channels=32).model).train()
    with EventStorage():
        loss_dict = model(random_batch(num_images=2, image_size=(96, 128), num_classes=7))
    assert len(loss_dict) >= 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    trainer = engine.build_trainer(engine.load_config(str(TINY_CONFIG)), model, [[]], optimizer)
    trainer.iter = 7
    with EventStorage(7) as storage:
        trainer._write_metrics({k: v.detach() for k, v in loss_dict.items()}, 0.0)
        assert math.isfinite(storage.history("total_loss").latest())
        for name in loss_dict:
            for bad in (float("nan"), float("inf")):
                broken = {k: v.detach().clone() for k, v in loss_dict.items()}
                broken[name] = torch.tensor(bad)
                with pytest.raises(engine.NonFiniteLossError) as info:
                    trainer._write_metrics(broken, 0.0)
                message = str(info.value)
                assert f"Non-finite loss at iteration 7: {name}={bad}" in message
                others = [k for k in loss_dict if k != name]
                assert all(k in message for k in others)  # the finite ones, for context


class _NaNAt(torch.nn.Module):
    """Wraps a model: its ``loss_box_reg`` is NaN at one call."""

    def __init__(self, model, at):
        super().__init__()
        self.model, self.at, self.calls = model, at, 0

    def forward(self, batch):
        losses = self.model(batch)
        if self.calls == self.at:
            losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
        self.calls += 1
        return losses


def test_nan_loss_stops_training_before_the_optimizer_step():
    torch.manual_seed(0)
    cfg = engine.load_config(str(TINY_CONFIG))
    inner = engine.build_model(cfg)
    model = _NaNAt(inner, at=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = itertools.cycle([random_batch(num_images=2, num_classes=7, seed=s) for s in range(3)])

    class Snapshot(HookBase):
        def after_step(self):
            self.weights = {k: v.detach().clone() for k, v in inner.named_parameters()}

    snapshot = Snapshot()
    trainer = engine.build_trainer(cfg, model, batches, optimizer)
    trainer.register_hooks([snapshot])
    with pytest.raises(engine.NonFiniteLossError, match=r"at iteration 2: loss_box_reg=nan"):
        trainer.train(0, 5)
    assert trainer.iter == 2
    # iteration 2 changed no weight (the snapshot is from the end of iteration 1; its forward
    # pass did update BatchNorm statistics, which are not weights)
    for k, v in inner.named_parameters():
        assert torch.equal(v, snapshot.weights[k]), k


def test_diverged_box_outputs_stop_before_the_assigner():
    torch.manual_seed(0)
    model = engine.build_model(engine.load_config(str(TINY_CONFIG)))
    with torch.no_grad():
        model.head.bbox_pred.bias.fill_(float("nan"))
    with EventStorage(5), pytest.raises(
        NonFinitePredictionError, match="Non-finite box outputs of the head at iteration 5"
    ):
        model(random_batch(num_images=1, num_classes=7))


def _grads_of(params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()


def test_gradient_clipping_by_norm_and_by_value():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    grads = [torch.full((3,), 4.0), torch.full((4,), -3.0)]  # global L2 norm sqrt(48 + 36)
    options = dict(engine.CLIP_GRAD_DEFAULTS, enabled=True, clip_value=2.0)
    opt = engine.add_gradient_clipping(torch.optim.SGD(params, lr=1.0), options)
    assert type(opt).__name__ == "SGDWithClipGrad" and isinstance(opt, torch.optim.SGD)
    _grads_of(params, grads)
    with EventStorage() as storage:
        opt.step()
    total = math.sqrt(48 + 36)
    assert storage.history("grad_norm").latest() == pytest.approx(total)
    assert torch.allclose(params[0].data, torch.full((3,), -4.0 * 2.0 / total), atol=1e-6)
    assert torch.cat([p.data for p in params]).norm() == pytest.approx(2.0, rel=1e-5)

    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    opt = engine.add_gradient_clipping(
        torch.optim.SGD(params, lr=1.0), dict(options, clip_type="value", clip_value=0.5)
    )
    _grads_of(params, grads)
    opt.step()
    assert torch.equal(params[0].data, torch.full((3,), -0.5))
    assert torch.equal(params[1].data, torch.full((4,), 0.5))

    plain = torch.optim.SGD(params, lr=1.0)
    assert engine.add_gradient_clipping(plain, engine.CLIP_GRAD_DEFAULTS) is plain
    assert type(plain) is torch.optim.SGD


def test_gradient_clipping_from_the_config_with_the_lr_schedule():
    """``train.clip_grad`` through build_optimizer, in a trainer with the LR scheduler hook
    (which wraps ``optimizer.step`` too)."""
    torch.manual_seed(0)
    cfg = engine.load_config(
        str(TINY_CONFIG), ["train.clip_grad.enabled=True", "train.clip_grad.clip_value=0.01"]
    )
    model = engine.build_model(cfg)
    optimizer = engine.build_optimizer(cfg, model)
    batches = itertools.cycle([random_batch(num_images=2, num_classes=7, seed=s) for s in range(2)])
    trainer = engine.build_trainer(cfg, model, batches, optimizer)
    from detectron2.engine import hooks

    trainer.register_hooks([hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier))])
    trainer.train(0, 3)
    norms = trainer.storage.history("grad_norm").values()
    assert len(norms) == 3 and all(n > 0.01 for n, _ in norms)  # clipped from above 0.01
    assert trainer.storage.history("lr").latest() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision training needs CUDA")
@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_amp_training_steps_on_cuda(path):
    torch.manual_seed(0)
    cfg = load_method_config(path)
    cfg.train.device = "cuda"
    cfg.train.amp.enabled = True
    cfg.train.clip_grad.enabled = True
    model = engine.build_model(cfg)
    optimizer = engine.build_optimizer(cfg, model)
    batches = itertools.cycle(
        [
            random_batch(num_images=2, image_size=(256, 320), num_boxes=8, num_classes=7, seed=s)
            for s in range(4)
        ]
    )
    trainer = engine.build_trainer(cfg, model, batches, optimizer)
    assert isinstance(trainer, engine.AMPTrainerChecked)
    trainer.train(0, 6)
    history = trainer.storage.history("total_loss").values()
    assert len(history) == 6 and all(math.isfinite(v) for v, _ in history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.grad_scaler.get_scale() > 0


# ================================================================================ crash / resume


def _resume_cfg(output_dir):
    cfg = engine.load_config(
        str(TINY_CONFIG),
        [
            f"train.output_dir={output_dir}",
            "train.max_iter=6",
            "train.checkpointer.period=2",
            "train.metrics_window=1",
            "train.eval_period=0",
        ],
    )
    cfg.dataloader.evaluator = None
    return cfg


def _state_equal(a, b):
    return (
        all(torch.allclose(a[k], b[k], rtol=0, atol=0, equal_nan=True) for k in a)
        and a.keys() == b.keys()
    )


def test_resume_after_a_crash_continues_like_an_uninterrupted_run(
    tmp_path, synthetic_datasets, monkeypatch
):
    full_dir, crash_dir = tmp_path / "full", tmp_path / "crashed"
    engine.prepare_datasets(_resume_cfg(full_dir))
    seed_all_rng(0)
    engine.do_train(_resume_cfg(full_dir))

    build_hooks = trainer_mod.build_hooks
    monkeypatch.setattr(
        trainer_mod, "build_hooks", lambda *a, **k: build_hooks(*a, **k) + [CrashAfter(3)]
    )
    seed_all_rng(0)
    with pytest.raises(SimulatedCrash):
        engine.do_train(_resume_cfg(crash_dir))
    monkeypatch.setattr(trainer_mod, "build_hooks", build_hooks)
    assert (crash_dir / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (crash_dir / "model_final.pth").exists()

    seed_all_rng(123)  # the resumed run owes nothing to the process's random state
    engine.do_train(_resume_cfg(crash_dir), resume=True)
    full, resumed = losses_by_iteration(full_dir), losses_by_iteration(crash_dir)
    assert sorted(full) == list(range(6)) and sorted(resumed) == list(range(6))
    for it in range(6):
        assert resumed[it] == full[it], it  # bit for bit, on CPU
    a = torch.load(full_dir / "model_final.pth", weights_only=True)
    b = torch.load(crash_dir / "model_final.pth", weights_only=True)
    assert _state_equal(a["model"], b["model"])
    assert a["train_data"] == b["train_data"] == {"seed": 0}


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    good = (tmp_path / "model_0000001.pth").read_bytes()

    from dense_assign.engine import checkpoint as checkpoint_mod

    def dying_save(data, f):  # the process dies half-way through the write
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoint_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000002", iteration=2)
    monkeypatch.undo()
    assert not (tmp_path / "model_0000002.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == good
    assert not list(tmp_path.glob(f"*{TMP_MARK}*"))
    assert ckpt.has_checkpoint()
    assert (
        AtomicCheckpointer(torch.nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)[
            "iteration"
        ]
        == 1
    )

    # a temporary file left by a kill -9 is removed by the next save
    stale = tmp_path / f"model_0000003.pth{TMP_MARK}4242"
    stale.write_bytes(b"partial")
    ckpt.save("model_0000003", iteration=3)
    assert not stale.exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert torch.load(tmp_path / "model_0000003.pth", weights_only=True)["iteration"] == 3


# ================================================================================ data stream
def _fake_dicts(n=11):
    # alternate wide and tall images, so that aspect-ratio grouping reorders the stream
    return [
        {
            "file_name": f"img{i}.png",
            "image_id": i,
            "width": 200 if i % 3 else 100,
            "height": 100 if i % 3 else 200,
        }
        for i in range(n)
    ]


def _record_mapper(d):
    """The image and the random draws an augmentation would make."""
    return (
        d["file_name"],
        round(float(np.random.rand()), 12),
        round(random.random(), 12),
        round(float(torch.rand(1)), 7),
    )


def _stream(start=0, n=6, world=1, rank=0, monkeypatch=None, **kwargs):
    if monkeypatch is not None:
        monkeypatch.setattr(data_mod.comm, "get_world_size", lambda: world)
        monkeypatch.setattr(data_mod.comm, "get_rank", lambda: rank)
    kwargs.setdefault("seed", 5)
    loader = engine.DeterministicTrainLoader(_fake_dicts(), _record_mapper, 4, **kwargs)
    loader.start_iter = start
    return list(itertools.islice(iter(loader), n))


@pytest.mark.parametrize("grouping", [True, False])
def test_stream_from_a_start_iteration_is_the_rest_of_the_stream(grouping):
    full = _stream(0, 9, aspect_ratio_grouping=grouping)
    assert _stream(4, 5, aspect_ratio_grouping=grouping) == full[4:]
    assert _stream(0, 9, aspect_ratio_grouping=grouping, seed=6) != full
    if grouping:  # each batch holds images of one aspect group
        for batch in full:
            assert len({int(name[3:-4]) % 3 == 0 for name, *_ in batch}) == 1
    # every image once per epoch (without grouping: positions map to permutations of the images)
    if not grouping:
        names = [name for batch in full for name, *_ in batch]
        assert sorted(names[:11]) == sorted(d["file_name"] for d in _fake_dicts())


def test_stream_does_not_depend_on_workers_or_on_global_random_state():
    reference = _stream(2, 5)
    np.random.seed(1)
    random.seed(1)
    torch.manual_seed(1)

    def state():
        return (
            np.random.get_state()[1].tolist(),
            random.getstate(),
            torch.get_rng_state().tolist(),
        )

    before = state()
    assert _stream(2, 5) == reference
    assert state() == before  # the mapper's draws do not consume the process's generators
    assert _stream(2, 5, num_workers=2) == reference


def test_stream_splits_global_batches_over_processes(monkeypatch):
    single = _stream(1, 5, monkeypatch=monkeypatch)
    parts = [_stream(1, 5, world=2, rank=r, monkeypatch=monkeypatch) for r in (0, 1)]
    for k in range(5):
        assert len(parts[0][k]) == len(parts[1][k]) == 2
        assert parts[0][k] + parts[1][k] == single[k]
    with pytest.raises(
        engine.ConfigError,
        match="total_batch_size=4 must be a positive multiple of the number of processes \\(3\\)",
    ):
        _stream(0, 1, world=3, monkeypatch=monkeypatch)


def test_stream_seed_goes_through_the_checkpoint():
    loader = engine.DeterministicTrainLoader(_fake_dicts(), _record_mapper, 4, seed=3)
    other = engine.DeterministicTrainLoader(_fake_dicts(), _record_mapper, 4, seed=99)
    other.load_state_dict(loader.state_dict())
    assert other.seed == 3
    assert list(itertools.islice(iter(other), 3)) == list(itertools.islice(iter(loader), 3))


def test_train_net_uses_the_deterministic_stream(synthetic_datasets):
    cfg = engine.load_config(str(TINY_CONFIG))
    engine.prepare_datasets(cfg)
    assert isinstance(engine.build_train_loader(cfg), engine.DeterministicTrainLoader)
    cfg = engine.load_config(str(TINY_CONFIG), ["train.deterministic_data=False"])
    assert not isinstance(engine.build_train_loader(cfg), engine.DeterministicTrainLoader)


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=method_id)
def test_mixed_precision_forward_and_backward_on_cpu(path):
    """What AMP does on a GPU, on the CPU: the model's forward under ``torch.autocast`` (fp16
    head outputs), then backward. The first GPU run found fvcore's GIoU refusing fp16 boxes next to
    fp32 targets; the assigners and losses now get float32 head outputs."""
    torch.manual_seed(0)
    model = instantiate(load_method_config(path, channels=32).model).train()
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=6, num_classes=7)
    with EventStorage(), torch.autocast("cpu", dtype=torch.float16):
        losses = model(batch)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

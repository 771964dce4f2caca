"""Tests of ``train_net.py`` and ``dense_assign.engine`` on CPU.

The end-to-end tests run ``train_net.py`` as a subprocess (as a user would) with the tiny FCOS of
``tests/configs/tiny_fcos.py`` on the generated ``synthetic_tiny`` dataset (generated once per
module under a temporary ``DETECTRON2_DATASETS``). One training run is shared by the tests of
training, ``--resume`` and ``--eval-only``; those that change an output directory use a copy.
"""

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dense_assign import engine
from dense_assign.engine import launcher as launcher_mod

from ..helpers import LogRecords, assert_ok, read_metrics
from ..helpers import run_train_net as run_train_net_with_config

ROOT = Path(__file__).resolve().parents[2]
TRAIN_NET = ROOT / "train_net.py"
CONFIG = ROOT / "tests" / "configs" / "tiny_fcos.py"
LOSS_KEYS = ("total_loss", "loss_cls", "loss_box_reg", "loss_centerness")
MAX_ITER = 6  # of the config; checkpointer.period is 3


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    return tmp_path_factory.mktemp("detectron2_datasets")


# helpers.run_train_net with this module's 4-minute bound
run_train_net = functools.partial(run_train_net_with_config, timeout=240)


def training_iterations(metrics):
    return [m["iteration"] for m in metrics if "total_loss" in m]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def checkpoint_iteration(path):
    return torch.load(path, map_location="cpu", weights_only=True)["iteration"]


def assert_same_results(a, b):
    assert a.keys() == b.keys()
    for task in a:
        assert a[task].keys() == b[task].keys(), task
        for metric, value in a[task].items():
            other = b[task][metric]
            if value is None or other is None:
                assert value is other, (task, metric, value, other)
            else:
                assert value == pytest.approx(other, rel=1e-6, abs=1e-9), (task, metric)


def assert_same_predictions(path_a, path_b):
    a, b = read_json(path_a), read_json(path_b)
    assert len(a) > 0, "the model made no predictions: the comparison would prove nothing"
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["score"] == pytest.approx(y["score"], rel=1e-5, abs=1e-7)
        assert x["bbox"] == pytest.approx(y["bbox"], rel=1e-5, abs=1e-4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, datasets_root):
    """One training run of the tiny config (6 iterations, 2 images visualized)."""
    out = tmp_path_factory.mktemp("runs") / "train"
    proc = run_train_net([f"train.output_dir={out}", "train.vis_predictions=2"], datasets_root)
    assert_ok(proc)
    return out, proc


# ------------------------------------------------------------------------------ end to end
def test_train_writes_checkpoints_metrics_and_final_results(trained, datasets_root):
    out, proc = trained
    # Checkpoints every 3 iterations and at the end; last_checkpoint names the final one.
    for name in ("model_0000002.pth", "model_0000005.pth", "model_final.pth", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    log = (out / "log.txt").read_text()
    assert "Contents of args.config_file" in log and "\x1b[" not in log  # no ANSI colour codes
    assert checkpoint_iteration(out / "model_0000002.pth") == 2
    assert checkpoint_iteration(out / "model_final.pth") == MAX_ITER - 1
    assert "vis_predictions: 2" in (out / "config.yaml").read_text()
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard event file"

    # metrics.json: one line per iteration (log_period 1) with finite losses, in order.
    metrics = read_metrics(out)
    assert training_iterations(metrics) == list(range(MAX_ITER))
    iterations = [m["iteration"] for m in metrics]
    assert iterations == sorted(iterations) and len(set(iterations)) == len(iterations)
    for m in metrics:
        if "total_loss" in m:
            for key in LOSS_KEYS:
                assert math.isfinite(m[key]), (m["iteration"], key)
            assert "lr" in m
    # The evaluation results also went into the event storage.
    assert any("bbox/AP" in m for m in metrics)

    # Final evaluation: the AP table and the copy-paste lines in the log, the numbers in JSON.
    log = (out / "log.txt").read_text()
    assert "Starting training from iteration 0" in log
    assert re.search(rf"iter: {MAX_ITER - 1}\s+total_loss: ", log), "no detectron2 progress line"
    assert "Evaluation results for bbox" in log
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    final = read_json(out / "final_results.json")
    for metric in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        value = final["bbox"][metric]
        assert isinstance(value, float) and math.isfinite(value), (metric, value)
        assert 0.0 <= value <= 100.0
    assert "AP-rectangle" in final["bbox"]

    # Visualized predictions: 2 PNGs, ground truth | predictions, each panel the test image
    # scaled to a shorter side of at least VIS_MIN_SIDE, under an 18 px title strip.
    pngs = sorted((out / "predictions").glob("*.png"))
    assert len(pngs) == 2
    for png in pngs:
        stem = png.stem.split("_", 1)[1]
        originals = list(Path(datasets_root).rglob(f"images/{stem}.*"))
        assert originals, f"no source image for {png.name}"
        with Image.open(png) as drawn, Image.open(originals[0]) as original:
            assert drawn.format == "PNG"
            scale = max(1.0, engine.VIS_MIN_SIDE / min(original.size))
            width, height = (round(v * scale) for v in original.size)
            assert abs(drawn.size[0] - (2 * width + 8)) <= 2, (drawn.size, original.size)
            assert abs(drawn.size[1] - (height + 18)) <= 1, (drawn.size, original.size)


def test_resume_continues_from_last_checkpoint(trained, tmp_path, datasets_root):
    src, _ = trained
    out = tmp_path / "resume"
    shutil.copytree(src, out)
    before = read_metrics(out)

    proc = run_train_net(
        ["--resume", f"train.output_dir={out}", f"train.max_iter={MAX_ITER + 3}"], datasets_root
    )
    assert_ok(proc)
    log = (out / "log.txt").read_text()
    assert f"Starting training from iteration {MAX_ITER}" in log
    assert log.count("Starting training from iteration 0") == 1  # the first run only

    metrics = read_metrics(out)
    assert metrics[: len(before)] == before  # appended to, not rewritten
    assert training_iterations(metrics[len(before) :]) == [MAX_ITER, MAX_ITER + 1, MAX_ITER + 2]
    assert (out / "model_0000008.pth").is_file()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert checkpoint_iteration(out / "model_final.pth") == MAX_ITER + 2
    # The optimizer state was restored too (momentum buffers exist at the first resumed step).
    state = torch.load(out / "model_0000008.pth", map_location="cpu", weights_only=True)
    assert state["trainer"]["optimizer"]["state"]
    assert read_json(out / "final_results.json")["bbox"].keys() >= {"AP", "AP50"}


def test_eval_only_reproduces_final_evaluation(trained, tmp_path, datasets_root):
    src, _ = trained
    out = tmp_path / "eval"
    proc = run_train_net(
        [
            "--eval-only",
            f"train.output_dir={out}",
            f"train.init_checkpoint={src / 'model_final.pth'}",
        ],
        datasets_root,
    )
    assert_ok(proc)
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in proc.stdout
    evaluated = read_json(out / "eval_results.json")
    assert_same_results(evaluated, read_json(src / "final_results.json"))
    # Stronger than the (tiny) AP values: the very same detections.
    assert_same_predictions(
        out / "inference" / "coco_instances_results.json",
        src / "inference" / "coco_instances_results.json",
    )
    assert not (out / "model_final.pth").exists()  # evaluation does not train


def test_eval_only_resume_evaluates_last_checkpoint(trained, tmp_path, datasets_root):
    src, _ = trained
    out = tmp_path / "eval_resume"
    shutil.copytree(src, out)
    # model_0000002.pth as init_checkpoint must be ignored: --resume takes last_checkpoint.
    proc = run_train_net(
        [
            "--eval-only",
            "--resume",
            f"train.output_dir={out}",
            f"train.init_checkpoint={out / 'model_0000002.pth'}",
        ],
        datasets_root,
    )
    assert_ok(proc)
    assert f"Evaluating the last checkpoint {out / 'model_final.pth'}" in proc.stdout
    assert_same_results(read_json(out / "eval_results.json"), read_json(src / "final_results.json"))


def test_two_cpu_processes(tmp_path, datasets_root):
    out = tmp_path / "ddp"
    proc = run_train_net(
        [
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
            "train.device=cpu",
            f"train.output_dir={out}",
            "train.max_iter=4",
            "train.checkpointer.period=2",
        ],
        datasets_root,
        timeout=400,
    )
    assert_ok(proc)
    log = (out / "log.txt").read_text()
    assert "World size: 2" in log
    assert "device_ids=None" in log  # set by train_net itself, no override needed
    assert "2 CPU processes on this machine: 1 torch thread(s) each (OMP_NUM_THREADS=1)" in log
    assert (out / "log.txt.rank1").is_file()
    for name in ("model_0000001.pth", "model_0000003.pth", "model_final.pth"):
        assert (out / name).is_file(), name
    assert checkpoint_iteration(out / "model_final.pth") == 3
    assert training_iterations(read_metrics(out)) == [0, 1, 2, 3]
    final = read_json(out / "final_results.json")
    assert math.isfinite(final["bbox"]["AP"])


def test_cli_errors_name_the_file_and_the_key(tmp_path, capsys):
    # train_net.py's main, in this process (the subprocess tests above run its __main__ path)
    spec = importlib.util.spec_from_file_location("train_net_cli", TRAIN_NET)
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    missing = tmp_path / "no_such_config.py"
    with pytest.raises(SystemExit) as info:
        train_net.main(["--config-file", str(missing)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"Config file not found: {missing}" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------- in process
def test_help_explains_processes_and_new_keys():
    text = engine.build_argument_parser(prog="train_net.py").format_help()
    for expected in (
        "--num-gpus",
        "--eval-only",
        "--resume",
        "number of CPU processes",
        "train.vis_predictions",
        "final_results.json",
    ):
        assert expected in text, expected


def test_load_config_errors(tmp_path):
    with pytest.raises(engine.ConfigError, match="not found: .*nothing.py"):
        engine.load_config(str(tmp_path / "nothing.py"))
    txt = tmp_path / "config.txt"
    txt.write_text("x = 1\n")
    with pytest.raises(engine.ConfigError, match="config.txt is not a LazyConfig"):
        engine.load_config(str(txt))
    yacs = tmp_path / "yacs.yaml"
    yacs.write_text("MODEL:\n  WEIGHTS: x.pkl\nSOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(engine.ConfigError, match=r"yacs.yaml is not a detectron2 LazyConfig"):
        engine.load_config(str(yacs))


def test_overrides_are_checked():
    with pytest.raises(engine.ConfigError, match=r"'train\.max_itr' does not exist"):
        engine.load_config(str(CONFIG), ["train.max_itr=3"])
    with pytest.raises(engine.ConfigError, match=r"'dataloader\.tset\.num_workers'"):
        engine.load_config(str(CONFIG), ["dataloader.tset.num_workers=1"])
    cfg = engine.load_config(
        str(CONFIG),
        [
            "train.max_iter=3",
            "train.vis_predictions=4",  # a key the project reads with a default
            "train.ddp.device_ids=null",  # DDP keyword argument
            "model.test_nms_thresh=0.5",  # existing argument of a LazyCall
            "model.test_topk_candidates=50",  # constructor argument the config may not set
            "model.backbone.bottom_up.freeze_at=1",
            "+train.my_note=hello",  # explicitly added
        ],
    )
    assert cfg.train.max_iter == 3 and cfg.train.vis_predictions == 4
    assert cfg.train.ddp.device_ids is None
    assert cfg.model.test_nms_thresh == 0.5 and cfg.model.backbone.bottom_up.freeze_at == 1
    assert cfg.model.test_topk_candidates == 50
    assert cfg.train.my_note == "hello"
    assert engine.cfg_get(cfg, "train.absent.key", 7) == 7


def test_ddp_kwargs_on_cpu_and_cuda():
    cfg = engine.load_config(str(CONFIG))
    kwargs = engine.ddp_kwargs(cfg)
    assert "device_ids" in kwargs and kwargs["device_ids"] is None
    assert kwargs["broadcast_buffers"] is False and kwargs["find_unused_parameters"] is False
    cfg = engine.load_config(str(CONFIG), ["train.device=cuda"])
    assert "device_ids" not in engine.ddp_kwargs(cfg)  # create_ddp_model picks the local GPU


def test_amp_on_cpu_falls_back_to_simple_trainer():
    from detectron2.engine import AMPTrainer, SimpleTrainer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x):
            return {"loss": self.linear(torch.stack(x)).sum()}

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = [[torch.ones(2)]]
    handler = LogRecords()
    trainer_logger = logging.getLogger("dense_assign.engine.trainer")
    trainer_logger.addHandler(handler)
    try:
        cfg = engine.load_config(str(CONFIG), ["train.amp.enabled=True", "train.device=cpu"])
        trainer = engine.build_trainer(cfg, model, loader, optimizer)
        assert type(trainer) is engine.Trainer and not isinstance(trainer, AMPTrainer)
        assert any("AMPTrainer" in m and "SimpleTrainer" in m for m in handler.messages)
        handler.messages.clear()
        cfg = engine.load_config(str(CONFIG))
        assert type(engine.build_trainer(cfg, model, loader, optimizer)) is engine.Trainer
        assert not handler.messages
    finally:
        trainer_logger.removeHandler(handler)
    assert issubclass(AMPTrainer, SimpleTrainer) and issubclass(engine.Trainer, SimpleTrainer)
    assert issubclass(engine.AMPTrainerChecked, AMPTrainer)


def test_prepare_datasets_generates_only_synthetic_names(monkeypatch):
    import dense_assign.data

    cfg = engine.load_config(
        str(CONFIG),
        [
            "dataloader.train.dataset.names=[synthetic_tiny_train,my_coco_train]",
            "dataloader.test.dataset.names=synthetic_tiny_val",
        ],
    )
    assert engine.dataset_names_from_cfg(cfg) == [
        "synthetic_tiny_train",
        "my_coco_train",
        "synthetic_tiny_val",
    ]
    prepared = []
    monkeypatch.setattr(dense_assign.data, "prepare_synthetic", prepared.append)
    assert engine.prepare_datasets(cfg) == ["synthetic_tiny_train", "synthetic_tiny_val"]
    assert prepared == ["synthetic_tiny_train", "synthetic_tiny_val"]
    del cfg.dataloader.train.dataset  # a config without dataset names is fine
    assert engine.dataset_names_from_cfg(cfg) == ["synthetic_tiny_val"]


def test_cpu_threads_and_launch_environment(monkeypatch):
    assert engine.cpu_threads_per_process(2, 2) == 1
    assert engine.cpu_threads_per_process(2, 16) == 8
    assert engine.cpu_threads_per_process(4, 2) == 1
    assert engine.cpu_threads_per_process(1, 8) == 8

    fake_env = {}
    monkeypatch.setattr(os, "environ", fake_env)
    cfg = engine.load_config(str(CONFIG))  # train.device=cpu
    assert launcher_mod._prepare_environment(cfg, 1) == {}
    changed = launcher_mod._prepare_environment(cfg, 2)
    assert fake_env["OMP_NUM_THREADS"] == changed["OMP_NUM_THREADS"]
    assert int(changed["OMP_NUM_THREADS"]) == engine.cpu_threads_per_process(2)
    fake_env["OMP_NUM_THREADS"] = "3"  # the user's choice wins
    assert "OMP_NUM_THREADS" not in launcher_mod._prepare_environment(cfg, 2)
    assert fake_env["OMP_NUM_THREADS"] == "3"


def test_results_json_is_strict_json(tmp_path):
    results = {"bbox": {"AP": np.float64(12.5), "AP-ring": float("nan"), "APl": torch.tensor(3.0)}}
    path = engine.write_results_json(results, str(tmp_path / "r.json"))
    text = Path(path).read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"bbox": {"AP": 12.5, "AP-ring": None, "APl": 3.0}}


def _fake_test_loader(files):
    """Stands for a test loader without .dataset/.mapper: batches of one model input."""
    return [[{"file_name": f, "image": torch.zeros(3, 8, 8)}] for f in files]


def test_visualize_predictions_draws_scores_above_threshold(tmp_path):
    from detectron2.config import LazyCall as L
    from detectron2.structures import Boxes, Instances
    from omegaconf import OmegaConf

    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.full((40, 60, 3), 255, dtype=np.uint8)).save(path)
        files.append(str(path))

    class FakeDetector(torch.nn.Module):
        def forward(self, batch):
            assert not self.training and len(batch) == 1
            inst = Instances((40, 60))
            inst.pred_boxes = Boxes(torch.tensor([[5.0, 5.0, 30.0, 30.0], [40.0, 5.0, 55.0, 35.0]]))
            inst.scores = torch.tensor([0.9, 0.2])  # the second one is not drawn
            inst.pred_classes = torch.tensor([0, 1])
            return [{"instances": inst}]

    cfg = OmegaConf.create({"train": {"output_dir": str(tmp_path / "out")}, "dataloader": {}})
    cfg.dataloader.test = L(_fake_test_loader)(files=files)
    model = FakeDetector().train()
    written = engine.visualize_predictions(cfg, model, 1)
    assert model.training  # restored
    assert [Path(p).name for p in written] == ["000_a.png"]
    assert Path(written[0]).parent == tmp_path / "out" / engine.PREDICTIONS_DIR
    drawn = np.asarray(Image.open(written[0]).convert("RGB"))
    # one panel (the fake loader has no ground truth), scaled by 384 / 40 = 9.6, under the title
    assert drawn.shape == (18 + 384, 576, 3)
    panel = drawn[18:]
    assert (panel[48:298, 48:298] != 255).any()  # the box with score 0.9
    assert (panel[:260, 365:] == 255).all()  # nothing where the 0.2 box is (the label is lower)
    assert engine.visualize_predictions(cfg, model, 0) == []


def test_prediction_images_draw_one_box_a_place(tmp_path, monkeypatch):
    """Overlapping detections (IoU > 0.5) are drawn once, whatever their classes: the highest."""
    from detectron2.config import LazyCall as L
    from detectron2.structures import Boxes, Instances
    from omegaconf import OmegaConf

    from dense_assign.engine import visualization

    path = tmp_path / "a.png"
    Image.fromarray(np.full((40, 60, 3), 255, dtype=np.uint8)).save(path)

    class FakeDetector(torch.nn.Module):
        def forward(self, batch):
            inst = Instances((40, 60))
            boxes = [[5.0, 5.0, 30.0, 30.0], [6.0, 6.0, 31.0, 31.0], [40.0, 5.0, 55.0, 35.0]]
            inst.pred_boxes = Boxes(torch.tensor(boxes))
            inst.scores = torch.tensor([0.8, 0.9, 0.7])
            inst.pred_classes = torch.tensor([0, 1, 2])
            return [{"instances": inst}]

    drawn = []
    real = visualization.draw_gt_and_predictions
    monkeypatch.setattr(
        visualization,
        "draw_gt_and_predictions",
        lambda image, raw, inst, meta: drawn.append(inst) or real(image, raw, inst, meta),
    )
    cfg = OmegaConf.create({"train": {"output_dir": str(tmp_path / "out")}, "dataloader": {}})
    cfg.dataloader.test = L(_fake_test_loader)(files=[str(path)])
    engine.visualize_predictions(cfg, FakeDetector(), 1)
    assert sorted(drawn[0].pred_classes.tolist()) == [1, 2]  # class 0 lies under class 1


def test_prediction_images_show_ground_truth_beside_predictions():
    """Two panels, ground truth (its box drawn) | predictions, scaled to VIS_MIN_SIDE."""
    from detectron2.data import MetadataCatalog
    from detectron2.structures import BoxMode, Instances

    image = np.full((128, 128, 3), 255, dtype=np.uint8)
    record = {
        "annotations": [{"bbox": [10, 10, 60, 60], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}]
    }
    empty = Instances((128, 128))
    drawn = engine.draw_gt_and_predictions(image, record, empty, MetadataCatalog.get("__vis"))
    assert drawn.shape == (18 + 384, 2 * 384 + 8, 3)
    gt, pred = drawn[18:, :384], drawn[18:, 392:]
    assert (gt[30:181, 30:181] != 255).any()  # the GT box, at 3x
    assert (pred == 255).all()  # no prediction drawn


class _BrokenModelingFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import dense_assign.modeling`` fail inside the module, on a missing dependency."""

    def find_spec(self, name, path=None, target=None):
        if name == "dense_assign.modeling":
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import some_dependency_that_is_not_installed  # noqa: F401


def test_import_project_modules_only_ignores_a_missing_modeling_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "dense_assign.modeling", raising=False)
    monkeypatch.setitem(sys.modules, "dense_assign.modeling", None)  # "not there"
    engine.import_project_modules()  # no error

    monkeypatch.delitem(sys.modules, "dense_assign.modeling")
    monkeypatch.setattr(sys, "meta_path", [_BrokenModelingFinder()] + sys.meta_path)
    with pytest.raises(ModuleNotFoundError, match="some_dependency_that_is_not_installed"):
        engine.import_project_modules()


def test_importing_the_project_prints_no_dependency_warnings():
    """The known, harmless warnings of torch.jit.script (fvcore, detectron2), pkg_resources and
    detectron2 v0.6's meshgrid, and torch's "No CUDA runtime is found" log line, are filtered in
    dense_assign/__init__.py; anything else still shows (-W default prints every warning once)."""
    code = (
        "import dense_assign.engine, dense_assign.modeling, torch\n"
        "import torch.utils.cpp_extension\n"  # logs "No CUDA runtime is found" without a GPU
        "from detectron2.modeling.anchor_generator import DefaultAnchorGenerator\n"
        "DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[8])"
        "([torch.zeros(1, 1, 2, 2)])\n"
        "import warnings; warnings.warn('a warning of our own')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a warning of our own" in proc.stderr
    assert "Warning" not in proc.stderr.replace(
        "UserWarning: a warning of our own", ""
    ), proc.stderr
    assert "No CUDA runtime is found" not in proc.stderr, proc.stderr


def test_config_that_registers_its_dataset_the_plain_detectron2_way(
    trained, tmp_path, datasets_root
):
    """A config file calling register_coco_instances without a guard: train_net.py executes it
    once per process (it loads the config to check it, then in the training process), so the
    training runs instead of failing with "Dataset 'my_shapes_train' is already registered!"."""
    tiny = Path(datasets_root) / "synthetic_tiny"  # generated by the `trained` run
    config = tmp_path / "my_config.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        "from detectron2.data.datasets import register_coco_instances\n\n"
        f"register_coco_instances('my_shapes_train', {{}}, {str(tiny / 'annotations' / 'instances_train.json')!r}, {str(tiny / 'images')!r})\n"
        f"_base = LazyConfig.load({str(CONFIG)!r})\n"
        "model, dataloader, optimizer = _base.model, _base.dataloader, _base.optimizer\n"
        "lr_multiplier, train = _base.lr_multiplier, _base.train\n"
        "dataloader.train.dataset.names = 'my_shapes_train'\n"
    )
    out = tmp_path / "out"
    proc = run_train_net_with_config(
        [f"train.output_dir={out}", "train.max_iter=2"], datasets_root, config=config, timeout=240
    )
    assert_ok(proc)
    assert "already registered" not in proc.stderr
    assert (out / "final_results.json").is_file()
    assert "my_shapes_train" in (out / "log.txt").read_text()

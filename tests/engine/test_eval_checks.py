"""Evaluations that would give a wrong number or none fail clearly instead (issue #22).

* ``--eval-only`` refuses a checkpoint that leaves model parameters unset (missing, or of another
  shape: trained for another class count), naming them and the class counts, unless
  ``train.allow_partial_checkpoint=True``; training from a partial ``train.init_checkpoint`` (an
  ImageNet backbone, fine-tuning for another class count) stays possible.
* A test set without ground-truth boxes is an error before training starts when the config
  evaluates (``dataloader.evaluator``); ``dataloader.evaluator=null`` trains without evaluation.

In-process through ``dense_assign.engine`` (tiny FCOS of ``tests/configs/tiny_fcos.py``), plus one
``train_net.py`` command line for each, as a user sees it.
"""

import json

import pytest
import torch

import dense_assign.modeling  # noqa: F401
from dense_assign import engine
from dense_assign.data import DatasetError
from dense_assign.engine import trainer as trainer_mod

from ..helpers import TINY_CONFIG, run_train_net
from ..reliability_helpers import register_coco, write_coco_dataset

GOOD = ([10, 10, 40, 30], 1)  # (bbox xywh, json category id)
CLASSES = tuple("abcdefg")  # as many as the tiny config's model.num_classes (7)


@pytest.fixture
def no_evaluation(monkeypatch):
    """``do_eval_only`` without running the evaluation: the calls it would make."""
    calls = []
    monkeypatch.setattr(trainer_mod, "do_test", lambda cfg, model: calls.append(model) or {})
    return calls


def _cfg(tmp_path, overrides=()):
    return engine.load_config(
        str(TINY_CONFIG), [f"train.output_dir={tmp_path / 'out'}", *overrides]
    )


def _save_checkpoint(tmp_path, name, num_classes=7, drop_prefix=None):
    """A checkpoint of the tiny model built for ``num_classes`` (without the keys starting with
    ``drop_prefix``)."""
    torch.manual_seed(0)
    model = engine.build_model(_cfg(tmp_path, [f"model.num_classes={num_classes}"]))
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not (drop_prefix and k.startswith(drop_prefix))
    }
    path = tmp_path / name
    torch.save({"model": state, "iteration": 99}, path)
    return path


# =============================================================== 1. --eval-only and checkpoints
def test_eval_only_refuses_a_checkpoint_trained_for_another_class_count(tmp_path, no_evaluation):
    path = _save_checkpoint(tmp_path, "three_classes.pth", num_classes=3)
    cfg = _cfg(tmp_path, [f"train.init_checkpoint={path}"])
    with pytest.raises(engine.ConfigError) as info:  # train_net.py: one line, exit status 2
        engine.do_eval_only(cfg)
    assert type(info.value).__name__ == "CheckpointError"
    message = str(info.value)
    assert (
        f"Checkpoint {path} does not fit the model: 2 model parameter(s) with another shape "
        "(checkpoint vs model: head.cls_score.weight (3, 32, 3, 3) vs (7, 32, 3, 3), "
        "head.cls_score.bias (3,) vs (7,))"
    ) in message
    assert "were trained for 3 classes, but model.num_classes=7" in message
    assert "train.allow_partial_checkpoint=True" in message
    assert not no_evaluation, "evaluated a half-random head"


def test_eval_only_refuses_a_checkpoint_with_missing_parameters(tmp_path, no_evaluation):
    path = _save_checkpoint(tmp_path, "backbone_only.pth", drop_prefix="head.")
    cfg = _cfg(tmp_path, [f"train.init_checkpoint={path}"])
    with pytest.raises(engine.ConfigError) as info:  # train_net.py: one line, exit status 2
        engine.do_eval_only(cfg)
    assert type(info.value).__name__ == "CheckpointError"
    message = str(info.value)
    head_params = [k for k in engine.build_model(cfg).state_dict() if k.startswith("head.")]
    assert f"{len(head_params)} model parameter(s) missing from it (head." in message
    assert f"({len(head_params) - 5} more)" in message  # the first 5 named, the rest counted
    assert "with another shape" not in message and "trained for" not in message
    assert not no_evaluation


def test_eval_only_partial_load_when_allowed_and_a_fitting_checkpoint(
    tmp_path, no_evaluation, logs
):
    path = _save_checkpoint(tmp_path, "three_classes.pth", num_classes=3)
    overrides = [f"train.init_checkpoint={path}", "train.allow_partial_checkpoint=True"]
    engine.do_eval_only(_cfg(tmp_path, overrides))
    assert len(no_evaluation) == 1
    assert "were trained for 3 classes, but model.num_classes=7" in logs.text()
    assert "(train.allow_partial_checkpoint=True)" in logs.text()

    good = _save_checkpoint(tmp_path, "seven_classes.pth", num_classes=7)
    engine.do_eval_only(_cfg(tmp_path, [f"train.init_checkpoint={good}"]))
    assert len(no_evaluation) == 2
    loaded = no_evaluation[-1].state_dict()
    saved = torch.load(good, map_location="cpu", weights_only=True)["model"]
    torch.testing.assert_close({k: loaded[k] for k in saved}, saved, rtol=0, atol=0, equal_nan=True)


def test_class_count_of_a_checkpoint_with_several_priors_per_location():
    from fvcore.common.checkpoint import _IncompatibleKeys

    from dense_assign.engine.checkpoint import checkpoint_mismatch

    model = torch.nn.Module()
    model.num_classes = 3
    keys = _IncompatibleKeys(
        missing_keys=["head.cls_score.weight", "head.cls_score.bias"],
        unexpected_keys=["head.extra.weight"],
        incorrect_shapes=[
            ("head.cls_score.weight", (720, 256, 3, 3), (27, 256, 3, 3)),
            ("head.cls_score.bias", (720,), (27,)),
        ],
    )
    message = checkpoint_mismatch(model, keys)
    assert message.startswith("2 model parameter(s) with another shape (checkpoint vs model: ")
    assert message.endswith(
        "The class scores (head.cls_score.weight) were trained for 80 classes, "
        "9 priors per location, but model.num_classes=3"
    )
    # unexpected keys (not used by the model) and num_batches_tracked do not count
    fits = _IncompatibleKeys(["backbone.bn.num_batches_tracked"], ["head.extra.weight"], [])
    assert checkpoint_mismatch(model, fits) == ""


@pytest.mark.long  # a train_net.py subprocess (~10 s); the check itself is tested in-process
def test_train_net_eval_only_reports_the_misfit_checkpoint_in_one_line(
    tmp_path, synthetic_datasets
):
    path = _save_checkpoint(tmp_path, "three_classes.pth", num_classes=3)
    proc = run_train_net(
        ["--eval-only", f"train.init_checkpoint={path}", f"train.output_dir={tmp_path / 'out'}"],
        synthetic_datasets,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train_net.py: error: Checkpoint {path} does not fit the model")
    assert "trained for 3 classes, but model.num_classes=7" in last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / engine.EVAL_RESULTS_FILE).exists()


# ===================================================== 2. a test set that cannot be evaluated
def _coco_without_annotations(tmp_path, name, key_present=False):
    json_file, root = write_coco_dataset(
        tmp_path / name, [("a", [GOOD], (96, 128)), ("b", [GOOD], (96, 128))], CLASSES
    )
    coco = json.loads(json_file.read_text())
    if key_present:
        coco["annotations"] = []
    else:
        del coco["annotations"]
    json_file.write_text(json.dumps(coco))
    return register_coco(name, json_file, root), json_file


def _test_set_cfg(tmp_path, name, overrides=()):
    cfg = _cfg(tmp_path, overrides)
    cfg.dataloader.test.dataset.names = name
    return cfg


def test_test_set_without_annotations_is_an_error_before_training(tmp_path):
    name, json_file = _coco_without_annotations(tmp_path, "eval_no_annotations")
    with pytest.raises(DatasetError) as info:
        engine.check_test_dataset(_test_set_cfg(tmp_path, name))
    message = str(info.value)
    assert f"The test dataset ['{name}'] (eval_no_annotations: json_file={json_file})" in message
    assert f"cannot be evaluated: no annotations ({json_file} has no 'annotations' key)" in message
    assert "in its 2 image(s)" in message and "dataloader.evaluator=null" in message

    name, json_file = _coco_without_annotations(tmp_path, "eval_empty_annotations", True)
    with pytest.raises(DatasetError, match=r"has an empty 'annotations' list"):
        engine.check_test_dataset(_test_set_cfg(tmp_path, name))
    # --eval-only evaluates through build_test_loader(evaluation=True): the same error
    with pytest.raises(DatasetError, match=r"cannot be evaluated: no annotations"):
        engine.build_test_loader(_test_set_cfg(tmp_path, name), evaluation=True)


def test_training_without_evaluation_needs_no_annotated_test_set(
    tmp_path, synthetic_datasets, logs
):
    """``dataloader.evaluator=null``: the test set is not used; also: a train.init_checkpoint of
    another class count initializes the rest of the model (fine-tuning) with one log line."""
    name, _ = _coco_without_annotations(tmp_path, "eval_skipped")
    path = _save_checkpoint(tmp_path, "three_classes.pth", num_classes=3)
    cfg = _test_set_cfg(
        tmp_path,
        name,
        [
            "dataloader.evaluator=null",
            "train.eval_period=0",
            "train.max_iter=1",
            f"train.init_checkpoint={path}",
        ],
    )
    engine.check_test_dataset(cfg)  # no error
    engine.prepare_datasets(cfg)  # synthetic_tiny_train (as train_net.py's run does)
    results = engine.do_train(cfg)
    assert results == {}
    assert (tmp_path / "out" / "model_final.pth").is_file()
    text = logs.text()
    assert f"train.init_checkpoint={path} initializes part of the model" in text
    assert "were trained for 3 classes, but model.num_classes=7" in text


@pytest.mark.long  # a train_net.py subprocess (~10 s); the check itself is tested in-process
def test_train_net_refuses_an_unevaluable_test_set_before_training(tmp_path, synthetic_datasets):
    _, json_file = _coco_without_annotations(tmp_path, "eval_cli")
    config = tmp_path / "no_test_annotations.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        "from detectron2.data import DatasetCatalog\n"
        "from detectron2.data.datasets import register_coco_instances\n"
        "if 'eval_cli' not in DatasetCatalog.list():\n"
        f"    register_coco_instances('eval_cli', {{}}, {str(json_file)!r}, "
        f"{str(json_file.parent / 'images')!r})\n"
        f"_base = LazyConfig.load({str(TINY_CONFIG)!r})\n"
        "model, dataloader, optimizer, lr_multiplier, train = (_base.model, _base.dataloader, "
        "_base.optimizer, _base.lr_multiplier, _base.train)\n"
        "dataloader.test.dataset.names = 'eval_cli'\n"
    )
    out = tmp_path / "out"
    proc = run_train_net(
        [f"train.output_dir={out}", "train.max_iter=2", "train.eval_period=0"],
        synthetic_datasets,
        config=config,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: dataset error: The test dataset ['eval_cli']")
    assert "has no 'annotations' key" in last
    assert "Starting training" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

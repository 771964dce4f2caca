"""Reliability: bad input data and bad configs fail early and clearly (or are filtered, counted).

Bad data goes through ``dense_assign.engine.build_train_loader`` / ``check_test_dataset`` (what
``train_net.py`` does before training) on small hand-made COCO datasets; bad configs through
``dense_assign.engine.build_model`` / ``check_config`` / ``launch_from_args``. One command line
each shows the user-facing form (one line, no traceback).
"""

import copy
import os
import sys

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign import engine
from dense_assign.data import DatasetError, ImageLoadError
from dense_assign.engine import launcher as launcher_mod

from ..helpers import (
    REPO,
    TINY_CONFIG,
    make_instances,
    random_batch,
    run_train_net,
)
from ..reliability_helpers import (
    register_coco,
    write_coco_dataset,
    write_png,
)

GOOD = ([10, 10, 40, 30], 1)  # (bbox xywh, json category id)


def _tiny_cfg(overrides=(), train_names=None):
    cfg = engine.load_config(str(TINY_CONFIG), list(overrides))
    if train_names is not None:
        cfg.dataloader.train.dataset.names = train_names
    return cfg


def _coco_case(tmp_path, name, images, categories=("a", "b", "c")):
    json_file, root = write_coco_dataset(tmp_path / name, images, categories)
    return register_coco(name, json_file, root), json_file, root


def _first_batches(loader, n=1):
    it = iter(loader)
    return [next(it) for _ in range(n)]


# ================================================================================ bad input
def test_images_without_annotations_are_filtered_with_a_count(tmp_path, logs):
    name, _, _ = _coco_case(
        tmp_path,
        "rel_empty",
        [("a", [GOOD], (96, 128)), ("b", [], (96, 128)), ("c", [GOOD], (96, 128))],
    )
    loader = engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))
    assert loader.size == 2
    assert "Removed 1 images with no usable annotations. 2 images left." in logs.text()
    batch = _first_batches(loader)[0]
    assert all(len(x["instances"]) == 1 for x in batch)

    # Kept on purpose (filter_empty=False): they train as all-background images.
    cfg = _tiny_cfg(["model.num_classes=3"], name)
    cfg.dataloader.train.dataset.filter_empty = False
    loader = engine.build_train_loader(cfg)
    assert loader.size == 3
    model = engine.build_model(_tiny_cfg(["model.num_classes=3"]))
    empty = [x for b in _first_batches(loader, 3) for x in b if len(x["instances"]) == 0]
    assert empty, "the image without annotations was not drawn"
    with EventStorage():
        losses = model(empty[:1])
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_boxes_are_dropped_and_counted(tmp_path, logs):
    nan = float("nan")
    name, _, _ = _coco_case(
        tmp_path,
        "rel_boxes",
        [
            ("ok", [GOOD, ([5, 5, 0, 20], 1), ([5, 5, 20, 0], 2)], (96, 128)),  # 2 zero-size
            ("neg", [GOOD, ([50, 20, -10, 10], 1)], (96, 128)),  # negative width
            ("nan", [GOOD, ([nan, 3, 10, 10], 2), ([3, 3, float("inf"), 10], 2)], (96, 128)),
            ("out", [GOOD, ([500, 10, 20, 20], 3), ([10, -90, 20, 30], 3)], (96, 128)),
            ("cut", [([120, 80, 40, 40], 2)], (96, 128)),  # partly outside: kept (clipped)
            ("all_bad", [([5, 5, 0, 0], 1)], (96, 128)),  # left without boxes: removed
        ],
    )
    loader = engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))
    text = logs.text()
    assert (
        "dropped 8 of 13 boxes: 2 with a NaN or infinite coordinate, 1 with a negative width "
        "or height, 3 with zero width or height, 2 entirely outside the image" in text
    ), text
    assert "nan.png" in text and "annotation 1" in text  # examples name the file and annotation
    assert "removed 1 image(s) left without annotations" in text
    assert loader.size == 5
    seen = {}
    for batch in _first_batches(loader, 6):
        for x in batch:
            seen[os.path.basename(x["file_name"])] = x["instances"]
    assert set(seen) == {"ok.png", "neg.png", "nan.png", "out.png", "cut.png"}
    for inst in seen.values():
        boxes = inst.gt_boxes.tensor
        assert len(inst) == 1 and torch.isfinite(boxes).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) > 0).all()


def test_unreadable_and_truncated_images_name_the_file(tmp_path):
    name, _, root = _coco_case(
        tmp_path, "rel_unreadable", [("fine", [GOOD], (96, 128)), ("broken", [GOOD], (96, 128))]
    )
    for damage in ("not an image", "truncated"):
        # Intact when the loaders are built (bad images are found then: tests/data/test_image_checks.py),
        # damaged during training.
        path = write_png(root / "broken.png", (96, 128), seed=3)
        cfg = _tiny_cfg(["model.num_classes=3", "train.seed=1"], name)
        loader = engine.build_train_loader(cfg)
        cfg.dataloader.train.num_workers = 1  # the same from a data-loader worker process
        worker_loader = engine.build_train_loader(cfg)
        if damage == "not an image":
            path.write_text("this is not a png file")
        else:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        with pytest.raises(ImageLoadError, match=r"Cannot load image .*broken\.png \(image_id=2\)"):
            _first_batches(loader, 4)
        with pytest.raises(ImageLoadError, match=r"broken\.png"):
            _first_batches(worker_loader, 4)


def test_missing_image_file_is_an_error_before_training(tmp_path):
    name, _, root = _coco_case(
        tmp_path, "rel_missing", [("here", [GOOD], (96, 128)), ("gone", [GOOD], (96, 128))]
    )
    (root / "gone.png").unlink()
    with pytest.raises(
        DatasetError,
        match=r"1 image file\(s\) of dataset\(s\) \['rel_missing'\] do not exist, e\.g\.: .*gone\.png",
    ):
        engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))


def test_category_id_not_in_the_json_categories_names_the_annotation(tmp_path):
    name, json_file, _ = _coco_case(
        tmp_path,
        "rel_catjson",
        [("a", [GOOD], (96, 128)), ("b", [GOOD, ([1, 1, 9, 9], 7)], (96, 128))],
    )
    with pytest.raises(DatasetError) as info:
        engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))
    message = str(info.value)
    assert f"json_file={json_file}" in message
    assert "category_id=7" in message and "annotation id=3 of image b.png (image_id=2)" in message


def test_category_id_outside_the_metadata_classes_names_the_annotation(tmp_path):
    write_png(tmp_path / "x.png")
    records = [
        {
            "file_name": str(tmp_path / "x.png"),
            "image_id": 11,
            "height": 96,
            "width": 128,
            "annotations": [
                {"bbox": [1, 1, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": [3, 3, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3, "id": 99},
            ],
        },
    ]
    name = "rel_custom_classes"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"])
    with pytest.raises(DatasetError) as info:
        engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))
    message = str(info.value)
    assert "outside [0, 3)" in message
    assert "x.png (image_id=11) annotation 1 (id=99): category_id=3" in message


def test_annotation_file_that_is_not_json_names_the_file(tmp_path):
    name, json_file, _ = _coco_case(tmp_path, "rel_badjson", [("a", [GOOD], (96, 128))])
    json_file.write_text('{"images": [ {"id": 1,, }')
    with pytest.raises(DatasetError) as info:
        engine.build_train_loader(_tiny_cfg(["model.num_classes=3"], name))
    message = str(info.value)
    assert "Cannot load the training dataset ['rel_badjson']" in message
    assert f"json_file={json_file}" in message and "JSONDecodeError" in message
    # the test set is checked before training too, not only at the final evaluation
    cfg = _tiny_cfg(["model.num_classes=3"])
    cfg.dataloader.test.dataset.names = name
    with pytest.raises(DatasetError, match="Cannot load the test dataset"):
        engine.check_test_dataset(cfg)


def test_model_refuses_bad_ground_truth_naming_the_image():
    model = engine.build_model(_tiny_cfg())
    batch = random_batch(num_images=1, num_boxes=2, num_classes=7)
    batch[0]["file_name"] = "img_7.png"
    bad = batch[0]["instances"].gt_boxes.tensor.clone()
    bad[1, 2] = float("nan")
    batch[0]["instances"] = make_instances(bad, batch[0]["instances"].gt_classes, (128, 160))
    with EventStorage(), pytest.raises(
        ValueError, match=r"img_7\.png: non-finite boxes at indices \[1\]"
    ):
        model(batch)
    batch = random_batch(num_images=1, num_boxes=2, num_classes=7)
    batch[0]["instances"].gt_classes[0] = 7
    with EventStorage(), pytest.raises(ValueError, match=r"class ids \[7\] outside \[0, 7\)"):
        model(batch)


def test_train_net_reports_bad_data_in_one_line_before_training(tmp_path, synthetic_datasets):
    _, json_file, _ = _coco_case(tmp_path, "rel_cli_bad", [("a", [GOOD], (96, 128))])
    json_file.write_text("not json")
    config = tmp_path / "bad_data.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        "from detectron2.data import DatasetCatalog\n"
        "from detectron2.data.datasets import register_coco_instances\n"
        "if 'rel_cli_bad' not in DatasetCatalog.list():\n"
        f"    register_coco_instances('rel_cli_bad', {{}}, {str(json_file)!r}, {str(json_file.parent / 'images')!r})\n"
        f"_base = LazyConfig.load({str(TINY_CONFIG)!r})\n"
        "model, dataloader, optimizer, lr_multiplier, train = (_base.model, _base.dataloader, "
        "_base.optimizer, _base.lr_multiplier, _base.train)\n"
        "dataloader.train.dataset.names = 'rel_cli_bad'\n"
        "model.num_classes = 3\n"
        "dataloader.test.dataset.names = 'rel_cli_bad'\n"
    )
    proc = run_train_net(
        [f"train.output_dir={tmp_path / 'out'}"], synthetic_datasets, config=config
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "train_net.py: dataset error: Cannot load the training dataset ['rel_cli_bad']"
    )
    assert f"json_file={json_file}" in last
    assert "Traceback" not in proc.stderr
    assert "Starting training" not in proc.stdout + proc.stderr


# ================================================================================ bad configs
BAD_MODEL_CONFIGS = [
    # (config, override, what the message must contain)
    (
        None,
        "model.assigner=NoSuchAssigner",
        ["model.assigner='NoSuchAssigner'", "allowed: ATSSAssigner, AutoAssign"],
    ),
    (None, "model.head=NoSuchHead", ["model.head='NoSuchHead'", "allowed: DenseHead"]),
    (None, "model.head.conv_dims=[]", ["model.head.conv_dims", "tower depth >= 1"]),
    (
        None,
        "model.head.quality=none",
        [
            "model.test_score_fn='sqrt_cls_quality_gated' needs a quality branch",
            "model.head.quality is 'none'",
        ],
    ),
    (
        None,
        "model.head.quality=quality",
        ["model.head.quality='quality'", "allowed: none, centerness, iou, objectness"],
    ),
    (None, "model.head.prior_prob=1.5", ["model.head.prior_prob must be in (0, 1)"]),
    (
        None,
        "model.test_score_fn=softmax",
        ["model.test_score_fn='softmax'", "allowed: cls, sqrt_cls_quality"],
    ),
    (None, "model.test_score_thresh=1.5", ["model.test_score_thresh (1.5) must be in [0, 1)"]),
    (None, "model.test_nms_thresh=0", ["model.test_nms_thresh (0) in (0, 1]"]),
    (
        "configs/Synthetic-Detection/iou_aware_retinanet_R_18_FPN.py",
        "model.test_score_fn.alpha=2",
        ["Cannot build model.test_score_fn (ClsPowQuality)", "alpha=2 must be in [0, 1]"],
    ),
    (None, "model.test_topk_candidates=0", ["model.test_topk_candidates=0 must be >= 1"]),
    (None, "model.loss.box_weight=-1", ["model.loss.box_weight must be a finite value >= 0"]),
    (None, "model.loss.box_loss=l2", ["model.loss.box_loss='l2'", "allowed: giou, iou, smooth_l1"]),
    (None, "model.loss.focal_alpha=2", ["model.loss.focal_alpha must be <= 1"]),
    (
        None,
        "model.assigner.center_sampling_radius=-1",
        ["Cannot build model.assigner (FCOSAssigner)", "center_sampling_radius"],
    ),
    (
        None,
        "model.loss.num_classes=5",
        ["model.loss.num_classes=5 differs from model.num_classes=7"],
    ),
    (
        "configs/Synthetic-Detection/retinanet_R_18_FPN.py",
        "model.assigner.thresholds=[0.6,0.5]",
        ["Cannot build model.assigner (MaxIoUAssigner)", "0 <= bg_below <= fg_from <= 1"],
    ),
    (
        "configs/Synthetic-Detection/atss_R_18_FPN.py",
        "model.assigner.topk=0",
        ["model.assigner.topk must be >= 1"],
    ),
    (
        "configs/Synthetic-Detection/pseudo_iou_R_18_FPN.py",
        "model.assigner.threshold=1.5",
        ["model.assigner.threshold must be in [0, 1]"],
    ),
    (
        "configs/Synthetic-Detection/sapd_R_18_FPN.py",
        "model.assigner.shrink_factor=0",
        ["model.assigner.shrink_factor must be in (0, 1]"],
    ),
    (
        "configs/Synthetic-Detection/autoassign_R_18_FPN.py",
        "model.assigner.temperature=0",
        ["model.assigner needs", "temperature > 0"],
    ),
]


@pytest.mark.parametrize(
    "config,override,expected", BAD_MODEL_CONFIGS, ids=[o for _, o, _ in BAD_MODEL_CONFIGS]
)
def test_bad_model_config_is_a_build_error_naming_the_key(config, override, expected):
    cfg = engine.load_config(str(REPO / config) if config else str(TINY_CONFIG), [override])
    with pytest.raises(engine.ConfigError) as info:
        engine.build_model(cfg)
    message = str(info.value)
    for part in expected:
        assert part in message, (part, message)


def test_head_by_registered_name_is_built_for_the_backbone():
    cfg = _tiny_cfg(["model.head=DenseHead", "model.test_score_fn=cls", "model.loss.quality=none"])
    model = engine.build_model(cfg)
    assert model.head.num_classes == 7 and model.head.num_levels == 5
    with EventStorage():
        losses = model(random_batch(num_images=1, num_classes=7))
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (
            ["model.num_classes=5"],
            "model.num_classes=5 but dataset 'synthetic_tiny_train' (dataloader.train.dataset.names) has 7 classes",
        ),
        (
            ["dataloader.test.dataset.names=synthetic_tiny_vall"],
            "dataloader.test.dataset.names: dataset 'synthetic_tiny_vall' is not registered",
        ),
        (
            ["train.clip_grad.clip_type=global"],
            "train.clip_grad.clip_type='global'; allowed: norm, value",
        ),
        (["train.clip_grad.clip_value=-1"], "train.clip_grad.clip_value=-1 must be a number > 0"),
        (
            ["train.clip_grad.max_norm=1"],
            "train.clip_grad has unknown key(s) ['max_norm']; allowed: ['clip_type', 'clip_value', 'enabled', 'norm_type']",
        ),
        (["train.metrics_window=0"], "train.metrics_window=0 must be an integer >= 1"),
    ],
)
def test_bad_train_config_is_refused_by_check_config(overrides, expected):
    cfg = engine.load_config(str(TINY_CONFIG), overrides)
    with pytest.raises(engine.ConfigError) as info:
        engine.check_config(cfg)
    assert expected in str(info.value)


def test_several_processes_get_the_model_error_before_starting(monkeypatch):
    started = []
    monkeypatch.setattr(launcher_mod, "launch", lambda *a, **k: started.append(a))
    monkeypatch.setattr(launcher_mod, "_prepare_environment", lambda cfg, n: {})
    parser = engine.build_argument_parser()
    args = parser.parse_args(
        ["--config-file", str(TINY_CONFIG), "--num-gpus", "2", "model.assigner=NoSuchAssigner"]
    )
    with pytest.raises(engine.ConfigError, match="model.assigner='NoSuchAssigner'"):
        engine.launch_from_args(args)
    assert not started
    args = parser.parse_args(["--config-file", str(TINY_CONFIG), "--num-gpus", "2"])
    engine.launch_from_args(args)
    assert len(started) == 1


def test_train_net_reports_a_bad_model_config_in_one_line(tmp_path, synthetic_datasets):
    proc = run_train_net(
        ["model.head.conv_dims=[]", f"train.output_dir={tmp_path}"], synthetic_datasets
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: error: Cannot build model.head (DenseHead): ValueError: ")
    assert "model.head.conv_dims must have at least one layer" in last
    assert "Traceback" not in proc.stderr


def test_clip_grad_keys_may_be_overridden_in_any_config():
    # configs/common/train.py defines train.clip_grad; detectron2's (tiny_fcos) does not
    synthetic = engine.load_config(
        str(REPO / "configs/Synthetic-Detection/fcos_R_18_FPN.py"), ["train.clip_grad.enabled=True"]
    )
    assert engine.clip_grad_options(synthetic) == dict(engine.CLIP_GRAD_DEFAULTS, enabled=True)
    tiny = engine.load_config(
        str(TINY_CONFIG), ["train.clip_grad.enabled=True", "train.clip_grad.clip_value=5"]
    )
    assert engine.clip_grad_options(tiny)["clip_value"] == 5
    assert engine.clip_grad_options(engine.load_config(str(TINY_CONFIG)))["enabled"] is False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

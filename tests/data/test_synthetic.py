"""Tests of the built-in synthetic detection dataset (dense_assign/data/synthetic/)."""

import json
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from dense_assign.data import synthetic
from dense_assign.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PRESETS,
    generate_synthetic_dataset,
    generate_synthetic_image,
    get_synthetic_object_masks,
    layout,
    make_synthetic_params,
    rendering,
)

# Small and fast; >= 2 images per split (detectron2's VOC loader cannot read 1-image splits).
TINY = dict(num_train=3, num_val=2, min_image_size=64, max_image_size=96, max_objects=6)


def _read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _generate(root, **overrides):
    params = {**TINY, **overrides}
    return generate_synthetic_dataset(os.path.join(str(root), "ds"), num_workers=1, **params)


def _xyxy(bbox):
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


# ------------------------------------------------------------------------------ determinism
def test_determinism(tmp_path):
    a = _generate(tmp_path / "a")
    # Same data with worker processes: images do not depend on the generation order.
    b = generate_synthetic_dataset(str(tmp_path / "b" / "ds"), num_workers=2, **TINY)
    for split in ("train", "val"):
        assert _read(a.json_file(split)) == _read(b.json_file(split))
    names = sorted(os.listdir(a.image_root))
    assert names == sorted(os.listdir(b.image_root))
    assert len(names) == TINY["num_train"] + TINY["num_val"]
    for name in names:
        np.testing.assert_array_equal(
            _pixels(os.path.join(a.image_root, name)), _pixels(os.path.join(b.image_root, name))
        )
        xml = name.replace(".png", ".xml")
        assert _read(os.path.join(a.voc_dir, "Annotations", xml)) == _read(
            os.path.join(b.voc_dir, "Annotations", xml)
        )

    c = _generate(tmp_path / "c", seed=1)
    assert _read(a.train_json) != _read(c.train_json)
    assert not np.array_equal(
        _pixels(os.path.join(a.image_root, names[0])), _pixels(os.path.join(c.image_root, names[0]))
    )


def test_train_and_val_differ():
    params = make_synthetic_params(**TINY)
    train, _ = generate_synthetic_image("train", 0, params)
    val, _ = generate_synthetic_image("val", 0, params)
    assert train.shape != val.shape or not np.array_equal(train, val)


# ------------------------------------------------------------------------------------- boxes
def test_boxes_tight_around_masks(monkeypatch):
    # Also check that every shape's pixels lie inside the canvas region the generator reads back.
    monkeypatch.setattr(rendering, "_CHECK_REGIONS", True)
    params = make_synthetic_params(min_image_size=96, max_image_size=160, max_objects=12, seed=3)
    total = 0
    for split, index in [("train", 0), ("train", 1), ("train", 2), ("val", 0)]:
        image, annos = generate_synthetic_image(split, index, params)
        masks = get_synthetic_object_masks(split, index, params)
        height, width = image.shape[:2]
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert len(masks) == len(annos)
        for anno, mask in zip(annos, masks):
            assert mask.shape == (height, width)
            ys, xs = np.nonzero(mask)
            x, y, w, h = anno["bbox"]
            assert [x, y, w, h] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
            assert w > 0 and h > 0
            assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
            assert anno["area"] == w * h
            assert 1 <= anno["category_id"] <= len(params.classes)
            total += 1
    assert total > 0


def test_classes_and_object_counts():
    assert len(SYNTHETIC_CLASSES) >= 6
    params = make_synthetic_params(
        min_image_size=96, max_image_size=128, min_objects=3, max_objects=7, seed=5
    )
    seen = set()
    for index in range(6):
        _, annos = generate_synthetic_image("train", index, params)
        assert 3 <= len(annos) <= 7
        seen |= {a["category_id"] for a in annos}
    assert seen <= set(range(1, len(SYNTHETIC_CLASSES) + 1))
    assert len(seen) >= 3


def test_zero_objects_allowed_only_if_requested():
    params = make_synthetic_params(
        min_image_size=64, max_image_size=64, min_objects=0, max_objects=0
    )
    _, annos = generate_synthetic_image("train", 0, params)
    assert annos == []


def test_crowded_variant():
    params = make_synthetic_params(**SYNTHETIC_PRESETS["synthetic_crowded"])
    counts, scales = [], []
    for index in range(2):
        _, annos = generate_synthetic_image("val", index, params)
        counts.append(len(annos))
        scales += [np.sqrt(a["area"]) for a in annos]
    assert np.mean(counts) >= 100
    assert max(counts) <= params.max_objects
    assert np.median(scales) <= 30
    assert max(scales) <= 2 * params.max_object_size


# ---------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(min_object_size=50.0, max_object_size=20.0), "min_object_size"),
        (dict(num_train=-1), "num_train"),
        (dict(min_objects=5, max_objects=2), "min_objects"),
        (dict(min_image_size=700, max_image_size=640), "min_image_size"),
        (dict(crowdedness=1.5), "crowdedness"),
        (dict(min_aspect=0.0), "min_aspect"),
        (dict(classes=["rectangle", "hexagon"]), "classes"),
        (dict(max_objects=2.5), "max_objects"),
        (dict(num_imgs=3), "num_imgs"),
    ],
)
def test_bad_params_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_synthetic_params(**kwargs)


def test_bad_params_raise_at_registration(tmp_path):
    with pytest.raises(ValueError, match="min_object_size"):
        synthetic.register_synthetic(
            "bad_synthetic", root=str(tmp_path), min_object_size=50, max_object_size=20
        )


# --------------------------------------------------------------------------------------- cache
def test_cache_reuse_and_regeneration(tmp_path, caplog):
    paths = _generate(tmp_path)
    stamp = json.loads(_read(paths.stamp_file))
    assert stamp["params"]["num_train"] == TINY["num_train"]
    mtimes = {p: os.stat(p).st_mtime_ns for p in (paths.stamp_file, paths.train_json)}

    again = _generate(tmp_path)  # same params: reused as is
    assert again == paths
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes

    _generate(tmp_path, seed=7)  # other params: regenerated in place of the old one
    assert json.loads(_read(paths.stamp_file))["params"]["seed"] == 7
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary / old folders left


def test_foreign_folder_is_not_overwritten(tmp_path):
    os.makedirs(tmp_path / "ds")
    (tmp_path / "ds" / "precious.txt").write_text("x")
    with pytest.raises(RuntimeError, match="refusing"):
        _generate(tmp_path)
    assert (tmp_path / "ds" / "precious.txt").exists()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    write_image = layout._write_image

    def failing_write(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        write_image(path, image)

    monkeypatch.setattr(layout, "_write_image", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path)
    assert not (tmp_path / "ds").exists()
    assert os.listdir(tmp_path) == []  # the temporary folder is removed too
    monkeypatch.setattr(layout, "_write_image", write_image)
    paths = _generate(tmp_path)
    assert os.path.exists(paths.stamp_file)


# ------------------------------------------------------------------------------ VOC and COCO
def test_voc_and_coco_agree(tmp_path):
    from detectron2.data.datasets import load_coco_json
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    paths = _generate(tmp_path)
    for split in ("train", "val"):
        coco = load_coco_json(paths.json_file(split), paths.image_root)
        voc = load_voc_instances(paths.voc_dir, split, list(SYNTHETIC_CLASSES))
        assert [int(d["image_id"]) for d in voc] == [d["image_id"] for d in coco]
        assert len(coco) == TINY["num_train" if split == "train" else "num_val"]
        for c, v in zip(coco, voc):
            assert (c["height"], c["width"]) == (v["height"], v["width"])
            # The VOC "jpg" is a link to the same PNG file.
            assert os.path.realpath(v["file_name"]) == os.path.realpath(c["file_name"])
            np.testing.assert_array_equal(_pixels(v["file_name"]), _pixels(c["file_name"]))
            assert len(c["annotations"]) == len(v["annotations"])
            for ca, va in zip(c["annotations"], v["annotations"]):
                assert ca["category_id"] - 1 == va["category_id"]  # json ids are 1-based
                np.testing.assert_allclose(_xyxy(ca["bbox"]), va["bbox"], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------- registration
def test_builtin_registration():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import dense_assign.data as data

    registered = set(DatasetCatalog.list())
    for name in ("synthetic_shapes", "synthetic_crowded", "synthetic_small", "synthetic_tiny"):
        for suffix in ("_train", "_val", "_voc_train", "_voc_val"):
            assert name + suffix in registered
    # the converging benchmark's data: its four classes, which its configs' num_classes matches
    small = MetadataCatalog.get("synthetic_small_train")
    assert small.thing_classes == ["triangle", "ring", "cross", "bar"]
    meta = MetadataCatalog.get("synthetic_shapes_train")
    assert meta.evaluator_type == "coco"
    assert meta.thing_classes == list(SYNTHETIC_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {
        i + 1: i for i in range(len(SYNTHETIC_CLASSES))
    }
    assert meta.json_file.endswith(
        os.path.join("synthetic_shapes", "annotations", "instances_train.json")
    )
    voc_meta = MetadataCatalog.get("synthetic_shapes_voc_val")
    assert voc_meta.evaluator_type == "pascal_voc"
    assert (voc_meta.year, voc_meta.split) == (2012, "val")
    assert voc_meta.dirname.endswith(os.path.join("synthetic_shapes", "VOC"))

    # Registering again (the import-time call, or explicitly) must not raise.
    data.register_all_synthetic()
    data.register_synthetic("synthetic_tiny", **SYNTHETIC_PRESETS["synthetic_tiny"])


def test_register_and_load_custom_variant(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = f"synthetic_test_{uuid.uuid4().hex[:8]}"
    names = synthetic.register_synthetic(name, root=str(tmp_path), **TINY)
    try:
        assert not os.path.exists(tmp_path / name)  # lazy: nothing generated yet
        coco_val = DatasetCatalog.get(f"{name}_val")  # generates
        assert os.path.exists(tmp_path / name / "synthetic_params.json")
        voc_val = DatasetCatalog.get(f"{name}_voc_val")
        assert [int(d["image_id"]) for d in voc_val] == [d["image_id"] for d in coco_val]
        for c, v in zip(coco_val, voc_val):
            assert [a["category_id"] for a in c["annotations"]] == [
                a["category_id"] for a in v["annotations"]
            ]
        paths = synthetic.prepare_synthetic(f"{name}_voc_train")
        assert paths == synthetic.prepare_synthetic(name)
        assert paths.dataset_dir == str(tmp_path / name)
        assert MetadataCatalog.get(f"{name}_train").json_file == paths.train_json
        assert MetadataCatalog.get(f"{name}_voc_train").dirname == paths.voc_dir
        # Same registration again: no-op; other parameters: replaces the registration.
        synthetic.register_synthetic(name, root=str(tmp_path), **TINY)
        synthetic.register_synthetic(name, root=str(tmp_path), **{**TINY, "seed": 1})
        with pytest.raises(KeyError):
            synthetic.prepare_synthetic("no_such_synthetic_dataset")
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_evaluators_on_ground_truth(tmp_path):
    """Ground-truth boxes given as detections score AP 100 with detectron2's evaluators."""
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    name = f"synthetic_eval_{uuid.uuid4().hex[:8]}"
    # Two classes and >= 8 objects per image, so every class has ground truth in val (the VOC
    # evaluator gives NaN AP for classes without any).
    params = {**TINY, "classes": ["ring", "bar"], "min_objects": 8, "max_objects": 12}
    names = synthetic.register_synthetic(name, root=str(tmp_path), **params)
    try:
        for split_name in [f"{name}_voc_val", f"{name}_val"]:
            dicts = DatasetCatalog.get(split_name)  # generates; evaluators read the files
            if split_name.endswith("_voc_val"):
                evaluator = PascalVOCDetectionEvaluator(split_name)
            else:
                evaluator = COCOEvaluator(split_name, use_fast_impl=False)
            evaluator.reset()
            for d in dicts:
                inst = Instances((d["height"], d["width"]))
                boxes = [
                    BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                    for a in d["annotations"]
                ]
                inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
                inst.scores = torch.ones(len(boxes))
                inst.pred_classes = torch.tensor(
                    [a["category_id"] for a in d["annotations"]], dtype=torch.int64
                )
                evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
            results = evaluator.evaluate()
            assert results["bbox"]["AP50"] == pytest.approx(100.0), split_name
            assert results["bbox"]["AP"] == pytest.approx(100.0), split_name
        assert MetadataCatalog.get(f"{name}_voc_val").year == 2012
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)

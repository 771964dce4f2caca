"""Issue #21, items 2-4: the classes of a dataset registered the plain detectron2 way
(``register_coco_instances``: its ``thing_classes`` are set only when the json is loaded) are
checked against ``model.num_classes`` before the model is built, and a COCO json with duplicate
image ids or annotations of missing images is refused instead of being dropped silently."""

import copy
import json
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from dense_assign import engine
from dense_assign.data import DatasetError, checks

from ..helpers import REPO, TINY_CONFIG, run_train_net
from ..reliability_helpers import register_coco, write_coco_dataset

GOOD = ([10, 10, 40, 30], 1)  # (bbox xywh, json category id)
OWN_DATA_CONFIG = REPO / "configs" / "Examples" / "fcos_R_50_FPN_own_coco_data.py"


def _coco(tmp_path, name, images, categories=("a", "b", "c")):
    json_file, root = write_coco_dataset(tmp_path / name, images, categories)
    return register_coco(name, json_file, root), json_file


def _cfg(num_classes, train, test=None):
    cfg = engine.load_config(str(TINY_CONFIG), [f"model.num_classes={num_classes}"])
    cfg.dataloader.train.dataset.names = train
    cfg.dataloader.test.dataset.names = test or train
    return cfg


def _edit_json(json_file, edit):
    coco = json.loads(json_file.read_text())
    edit(coco)
    json_file.write_text(json.dumps(coco))


# ============================================================ item 2: fewer classes than the model
def test_fewer_dataset_classes_than_num_classes_fails_before_the_model_is_built(tmp_path):
    name, json_file = _coco(
        tmp_path,
        "dc_two",
        [("a", [GOOD], (96, 128)), ("b", [([5, 5, 30, 30], 2)], (96, 128))],
        ("cat", "dog"),
    )
    # registered lazily: the classes are not known before the json is loaded
    assert MetadataCatalog.get(name).get("thing_classes", None) is None
    with pytest.raises(engine.ConfigError) as info:
        engine.check_config(_cfg(5, name))
    message = str(info.value)
    assert (
        "model.num_classes=5 but dataset 'dc_two' (dataloader.train.dataset.names) has 2 classes "
        "['cat', 'dog']" in message
    ), message
    assert f"json_file={json_file}" in message
    assert "COCO evaluation at its end fail" in message
    assert message.endswith("set model.num_classes=2")
    engine.check_config(_cfg(2, name))  # the right count passes


def test_the_test_set_classes_are_checked_too(tmp_path):
    train, _ = _coco(tmp_path, "dc_train3", [("a", [GOOD], (96, 128))])
    test, json_file = _coco(tmp_path, "dc_test2", [("a", [GOOD], (96, 128))], ("a", "b"))
    with pytest.raises(engine.ConfigError) as info:
        engine.check_config(_cfg(3, train, test))
    message = str(info.value)
    assert "dataset 'dc_test2' (dataloader.test.dataset.names) has 2 classes ['a', 'b']" in message
    assert f"json_file={json_file}" in message and "set model.num_classes=2" in message


def _write_own_data(root, categories):
    json_file, _ = write_coco_dataset(
        root,
        [("img_0", [GOOD, ([50, 20, 30, 40], 2)], (96, 128)), ("img_1", [GOOD], (96, 128))],
        categories,
    )
    for split in ("train", "val"):
        shutil.copy(json_file, root / f"{split}.json")


@pytest.mark.long  # a train_net.py subprocess (~10 s); the check itself is tested in-process
def test_train_net_refuses_num_classes_of_a_register_coco_instances_dataset(tmp_path):
    data = tmp_path / "my_data"
    _write_own_data(data, ("cat", "dog"))
    proc = run_train_net(
        [
            "model.num_classes=5",
            "train.device=cpu",
            "train.init_checkpoint=",
            "train.max_iter=1",
            "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[96]",
            "dataloader.train.mapper.augmentations.0.max_size=128",
            f"train.output_dir={tmp_path / 'out'}",
        ],
        tmp_path,
        config=OWN_DATA_CONFIG,
        env={"MY_DATA": str(data)},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-4000:]
    assert "Starting training" not in output
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "train_net.py: error: model.num_classes=5 in "
        f"{OWN_DATA_CONFIG} but dataset 'my_train' (dataloader.train.dataset.names) has 2 classes "
        "['cat', 'dog']"
    ), last
    assert f"json_file={data}/train.json" in last and last.endswith("set model.num_classes=2")


# ============================================================ item 3: class ids >= num_classes
def test_class_id_in_the_categories_but_outside_num_classes_is_named(tmp_path):
    name, json_file = _coco(
        tmp_path,
        "dc_three",
        [("mini_000", [GOOD, ([5, 5, 20, 20], 3)], (96, 128)), ("mini_001", [GOOD], (96, 128))],
    )
    with pytest.raises(engine.ConfigError) as info:
        engine.check_config(_cfg(2, name))
    message = str(info.value)
    assert (
        "model.num_classes=2 but dataset 'dc_three' (dataloader.train.dataset.names) has 3 classes "
        "['a', 'b', 'c'], and its annotations use class id(s) [2] outside [0, 2) "
        f"(json_file={json_file}): set model.num_classes=3" in message
    ), message
    # The loaders check the ids against the model's classes too (train_net.py builds them after
    # the model, with model.num_classes), naming the image and the annotation.
    with pytest.raises(DatasetError) as info:
        engine.build_train_loader(_cfg(2, name), num_classes=2)
    message = str(info.value)
    assert "outside [0, 2)" in message
    assert "mini_000.png (image_id=1) annotation 1: category_id=2" in message, message


def test_class_ids_of_a_dataset_without_class_names_are_checked(tmp_path):
    """A dataset registered with a function and no metadata: its dicts are loaded (as the loaders
    do) and their category ids compared with model.num_classes."""
    records = [
        {
            "file_name": str(tmp_path / "x.png"),
            "image_id": 1,
            "height": 96,
            "width": 128,
            "annotations": [
                {"bbox": [1, 1, 9, 9], "bbox_mode": 1, "category_id": c} for c in (0, 4)
            ],
        }
    ]
    name = "dc_no_metadata"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    with pytest.raises(engine.ConfigError) as info:
        engine.check_config(_cfg(3, name))
    message = str(info.value)
    assert (
        "model.num_classes=3 but dataset 'dc_no_metadata' (dataloader.train.dataset.names) has no "
        "class names in its metadata (thing_classes), and its annotations use class id(s) [4] "
        "outside [0, 3): set model.num_classes=5" in message
    ), message


# ============================================================ item 4: what detectron2 drops silently
def test_duplicate_image_ids_are_an_error_naming_the_json_and_the_ids(tmp_path):
    name, json_file = _coco(tmp_path, "dc_dup", [(f"im{i}", [GOOD], (96, 128)) for i in range(6)])

    def duplicate(coco):
        coco["images"][1]["id"] = 1  # im1.png takes the id of im0.png
        coco["images"][4]["id"] = 4  # im4.png takes the id of im3.png
        coco["images"][5]["id"] = 4

    _edit_json(json_file, duplicate)
    with pytest.raises(DatasetError) as info:
        engine.check_config(_cfg(3, name))
    message = str(info.value)
    assert message.startswith(f"Dataset 'dc_dup' (json_file={json_file}): ")
    assert (
        "2 image id(s) appear more than once in 'images' (3 extra image entries): "
        "id 1 (im0.png, im1.png), id 4 (im3.png, im4.png, im5.png)" in message
    ), message
    # the annotations of the images whose ids were taken (2, 5 and 6) now point at no image
    assert (
        "3 annotation(s) have an image_id that is not in 'images' (3 image id(s)): "
        "2 (1 annotation), 5 (1 annotation), 6 (1 annotation)" in message
    ), message
    assert "wrong ground truth" in message


def test_annotations_of_missing_images_are_an_error_with_the_first_ids_and_the_count(tmp_path):
    name, json_file = _coco(tmp_path, "dc_orphans", [("a", [GOOD], (96, 128))])

    def orphans(coco):
        for k in range(8):
            for _ in range(1 + (k == 0)):
                anno = dict(coco["annotations"][0], image_id=40 + k)
                anno["id"] = len(coco["annotations"]) + 1
                coco["annotations"].append(anno)

    _edit_json(json_file, orphans)
    # the test set is checked as well
    with pytest.raises(DatasetError) as info:
        engine.check_config(_cfg(7, "synthetic_tiny_train", name))
    message = str(info.value)
    assert message.startswith(f"Dataset 'dc_orphans' (json_file={json_file}): ")
    assert (
        "9 annotation(s) have an image_id that is not in 'images' (8 image id(s)): "
        "40 (2 annotations), 41 (1 annotation), 42 (1 annotation), 43 (1 annotation), "
        "44 (1 annotation), ... (8 in all)" in message
    ), message


def test_the_json_is_read_once_and_read_again_when_it_changes(tmp_path, monkeypatch):
    _, json_file = _coco(tmp_path, "dc_cache", [("a", [GOOD], (96, 128))])
    cache = tmp_path / "cache"
    loads = []
    real_load = json.load
    monkeypatch.setattr(checks.json, "load", lambda f: loads.append(f.name) or real_load(f))
    first = checks.coco_json_summary(json_file, str(cache))
    assert loads == [str(json_file)] and first["class_ids_used"] == [0]
    assert checks.coco_json_summary(json_file, str(cache)) is first  # in memory
    checks._JSON_SUMMARIES.clear()
    assert checks.coco_json_summary(json_file, str(cache)) == first  # the cache file
    assert str(json_file) not in loads[1:]
    _edit_json(json_file, lambda coco: coco["annotations"][0].update(category_id=3))
    assert checks.coco_json_summary(json_file, str(cache))["class_ids_used"] == [2]
    assert loads.count(str(json_file)) == 2

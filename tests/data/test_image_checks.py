"""Image files are checked before training, train and test sets alike (``dense_assign.data.checks``):
unreadable files, non-images, truncated images and sizes that differ from the json's are reported
in one message (dropped from a training set, an error for a test set); the check is cached per
file; an image that still fails during training is one line naming the file."""

import logging
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from PIL import Image

from dense_assign import engine
from dense_assign.data import DatasetError, ImageLoadError, check_dataset_dicts, checks
from dense_assign.data.checks import short_error

from ..helpers import TINY_CONFIG, run_train_net
from ..reliability_helpers import register_coco, write_coco_dataset, write_png

GOOD = ([10, 10, 40, 30], 1)  # (bbox xywh, json category id)
SIZE = (96, 128)  # (height, width) in the json


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DENSE_ASSIGN_CACHE_DIR", str(folder))
    return folder / "image_checks"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _damage(root, stem, how):
    path = root / f"{stem}.png"
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "text":
        path.write_text("this is not a png file")
    elif how == "size":  # 96x96 where the json says 128x96
        write_png(path, (SIZE[0], SIZE[0]), seed=5)
    elif how == "rotated":  # stored 96x128 with EXIF orientation 6: read as 128x96
        path.unlink()
        jpeg = root / f"{stem}.jpg"
        exif = Image.Exif()
        exif[274] = 6
        pixels = np.random.default_rng(0).integers(0, 255, (SIZE[1], SIZE[0], 3), np.uint8)
        Image.fromarray(pixels).save(jpeg, exif=exif)
        return jpeg
    return path


def _bad_dataset(tmp_path, name):
    """fine.png, rotated.jpg (EXIF, usable), trunc.png, text.png, small.png (wrong size)."""
    stems = ["fine", "rotated", "trunc", "text", "small"]
    json_file, root = write_coco_dataset(tmp_path / name, [(s, [GOOD], SIZE) for s in stems])
    rotated = _damage(root, "rotated", "rotated")
    text = json_file.read_text().replace('"rotated.png"', '"rotated.jpg"')
    json_file.write_text(text)
    for stem, how in (("trunc", "truncated"), ("text", "text"), ("small", "size")):
        _damage(root, stem, how)
    assert read_image(str(rotated)).shape[:2] == SIZE  # as detectron2's reader sees it
    return register_coco(name, json_file, root), root


def _cfg(train=None, test=None):
    cfg = engine.load_config(str(TINY_CONFIG), ["model.num_classes=3"])
    if train:
        cfg.dataloader.train.dataset.names = train
    if test:
        cfg.dataloader.test.dataset.names = test
    return cfg


def test_bad_training_images_are_dropped_with_one_message(tmp_path, logs):
    name, root = _bad_dataset(tmp_path, "img_bad_train")
    loader = engine.build_train_loader(_cfg(train=name))
    assert loader.size == 2  # fine.png and the EXIF-rotated rotated.jpg
    reports = [m for m in logs.messages if "cannot be used" in m]
    assert len(reports) == 1, logs.text()
    report = reports[0]
    assert report.startswith(
        f"Dataset 'img_bad_train' (images in {root}): 3 of 5 images cannot be used: "
        "1 not an image (text.png), 1 truncated or corrupt (trunc.png: OSError: image file is "
        "truncated"
    ), report
    assert "1 with a size that differs from the json's (small.png: 96x96, json 128x96)" in report
    assert "Dropped: training goes on without them" in report
    assert "rotated" not in report and "fine" not in report
    files = {os.path.basename(x["file_name"]) for b in [next(iter(loader))] for x in b}
    assert files <= {"fine.png", "rotated.jpg"}


def test_a_bad_test_image_is_an_error_before_training(tmp_path):
    name, _ = _bad_dataset(tmp_path, "img_bad_test")
    with pytest.raises(DatasetError) as info:
        engine.check_test_dataset(_cfg(test=name))
    message = str(info.value)
    assert "Dataset 'img_bad_test'" in message and "3 of 5 images cannot be used" in message
    assert "text.png" in message and "trunc.png" in message and "small.png" in message
    assert "a test set is evaluated on all of its images" in message


@pytest.mark.long  # a train_net.py subprocess (~10 s); the check itself is tested in-process
def test_train_net_stops_on_a_bad_test_image_in_one_line(tmp_path, synthetic_datasets):
    json_file, root = write_coco_dataset(
        tmp_path / "img_cli", [("a", [GOOD], SIZE), ("b", [GOOD], SIZE)]
    )
    _damage(root, "b", "truncated")
    config = tmp_path / "bad_image.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        "from detectron2.data import DatasetCatalog\n"
        "from detectron2.data.datasets import register_coco_instances\n"
        "if 'img_cli' not in DatasetCatalog.list():\n"
        f"    register_coco_instances('img_cli', {{}}, {str(json_file)!r}, {str(root)!r})\n"
        f"_base = LazyConfig.load({str(TINY_CONFIG)!r})\n"
        "model, dataloader, optimizer, lr_multiplier, train = (_base.model, _base.dataloader, "
        "_base.optimizer, _base.lr_multiplier, _base.train)\n"
        "model.num_classes = 3\n"
        "dataloader.train.dataset.names = 'img_cli'\n"
        "dataloader.test.dataset.names = 'img_cli'\n"
    )
    proc = run_train_net(
        [f"train.output_dir={tmp_path / 'out'}"],
        synthetic_datasets,
        config=config,
        env={"DENSE_ASSIGN_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "train_net.py: dataset error: Dataset 'img_cli' "
        f"(images in {root}): 1 of 2 images cannot be used: 1 truncated or corrupt (b.png: "
    ), last
    assert "Traceback" not in proc.stderr
    assert "Starting training" not in proc.stdout + proc.stderr
    # the training set's copy was dropped with a warning before the test set's check
    output = (proc.stdout + proc.stderr).splitlines()
    assert any(
        "1 of 2 images cannot be used" in line and "Dropped: training goes on without them" in line
        for line in output
    ), output[-20:]


def test_the_check_is_cached_per_file_and_redone_when_a_file_changes(
    tmp_path, cache_dir, monkeypatch
):
    stems = ["a", "b", "c", "d"]
    json_file, root = write_coco_dataset(tmp_path / "img_cache", [(s, [GOOD], SIZE) for s in stems])
    name = register_coco("img_cache", json_file, root)
    inspected = []
    real = checks.inspect_image

    def counting(path):
        inspected.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(checks, "inspect_image", counting)

    def check():
        inspected.clear()
        return check_dataset_dicts(DatasetCatalog.get(name), [name], 3, drop_bad_images=True)

    assert len(check()) == 4 and sorted(inspected) == ["a.png", "b.png", "c.png", "d.png"]
    cache_files = list(cache_dir.iterdir())
    assert len(cache_files) == 1 and cache_files[0].name.startswith("img_cache-")
    assert len(check()) == 4 and inspected == []  # all from the cache

    # A file rewritten: checked again (and now dropped)
    _damage(root, "b", "truncated")
    assert len(check()) == 3 and inspected == ["b.png"]
    assert len(check()) == 3 and inspected == []

    # Same length and mtime as before (cp -p, touch -r): the ctime still changes
    path = root / "c.png"
    data, stat = path.read_bytes(), path.stat()
    path.write_bytes(b"x" * len(data))  # no longer an image
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert len(check()) == 2 and inspected == ["c.png"]

    # A cache file that does not parse is ignored (and rewritten)
    cache_files[0].write_text("{not json")
    assert len(check()) == 2 and len(inspected) == 4
    assert len(check()) == 2 and inspected == []


def test_an_image_broken_during_training_is_one_line_naming_the_file(tmp_path):
    json_file, root = write_coco_dataset(
        tmp_path / "img_late", [("fine", [GOOD], SIZE), ("broken", [GOOD], SIZE)]
    )
    name = register_coco("img_late", json_file, root)
    cfg = _cfg(train=name)
    cfg.train.seed = 1
    loader = engine.build_train_loader(cfg)  # checked: both usable
    cfg.dataloader.train.num_workers = 1
    worker_loader = engine.build_train_loader(cfg)
    assert loader.size == worker_loader.size == 2
    _damage(root, "broken", "truncated")  # changed after the check
    for source in (loader, worker_loader):
        with pytest.raises(ImageLoadError) as info:
            it = iter(source)
            for _ in range(4):
                next(it)
        line = short_error(info.value)
        assert line is not None and "\n" not in line, line
        assert line.startswith("ImageLoadError: Cannot load image ") and "broken.png" in line
        assert "image file is truncated" in line

    # detectron2's training loop logs "Exception during training:" with the traceback, which
    # Python prints again when train_net.py exits: one line instead, naming the file.
    handler = _Records()
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    train_loop.addHandler(handler)
    try:
        try:
            raise info.value
        except ImageLoadError:
            train_loop.exception("Exception during training:")
        try:
            raise ValueError("something else")
        except ValueError:
            train_loop.exception("Exception during training:")
    finally:
        train_loop.removeHandler(handler)
    first, second = handler.records
    assert first.exc_info is None and first.getMessage() == (
        "Exception during training: " + short_error(info.value)
    )
    assert second.exc_info is not None  # other errors keep their traceback

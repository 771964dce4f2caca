"""Helpers of the reliability tests (tests/engine/test_reliability*.py,
tests/integration/test_reliability_long.py, and the data / engine tests that write datasets):
method configs, crowded images, peak memory, hand-made COCO datasets, losses read from a run's
metrics.json (the train_net.py subprocess helpers are in tests/helpers.py)."""

import json
import math
from pathlib import Path

import numpy as np
import torch
from detectron2.config import LazyConfig
from detectron2.engine import HookBase
from detectron2.layers import ShapeSpec
from PIL import Image

from .helpers import REPO, make_instances, read_metrics

#: One config per method (the family that ``dense_assign.tools.compare`` trains).
METHOD_CONFIGS = (
    "configs/Synthetic-Detection/fcos_R_18_FPN.py",
    "configs/Synthetic-Detection/af_baseline_R_18_FPN.py",
    "configs/Synthetic-Detection/pseudo_iou_R_18_FPN.py",
    "configs/Synthetic-Detection/atss_R_18_FPN.py",
    "configs/Synthetic-Detection/retinanet_R_18_FPN.py",
    "configs/Synthetic-Detection/iou_aware_retinanet_R_18_FPN.py",
    "configs/Synthetic-Detection/autoassign_R_18_FPN.py",
    "configs/Synthetic-Detection/sapd_R_18_FPN.py",
    "configs/Synthetic-Detection/tood_R_18_FPN.py",
    "configs/Synthetic-Detection/simota_R_18_FPN.py",
    "configs/Synthetic-Detection/dsl_R_18_FPN.py",
    "configs/Synthetic-Detection/ota_R_18_FPN.py",
    "configs/Synthetic-Detection/paa_R_18_FPN.py",
)
CROWDED_IMAGE = (800, 1333)
CROWDED_BOXES = 1000


def method_id(path: str) -> str:
    return Path(path).stem


def load_method_config(path: str, channels: int = 0):
    """The full LazyConfig of a method config; with ``channels``, its FPN and head thinned to
    that many channels and one tower conv (the assigner and the loss as configured)."""
    cfg = LazyConfig.load(str(REPO / path))
    if channels:
        m = cfg.model
        m.backbone.out_channels = channels
        if m.backbone.top_block.get("in_feature", "res5") != "res5":
            m.backbone.top_block.in_channels = channels
        m.head.input_shape = [ShapeSpec(channels=channels)] * 5
        m.head.conv_dims = [channels]
    return cfg


def crowded_gt(num_boxes=CROWDED_BOXES, image_size=CROWDED_IMAGE, num_classes=7, seed=0):
    """``num_boxes`` boxes of 4-64 px (some overlapping, some cut by the image border)."""
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    n = num_boxes + num_boxes // 2  # some are dropped below
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w + 20.0, h + 20.0]) - 20.0
    wh = 4.0 + torch.rand(n, 2, generator=g) * 60.0
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
    boxes = boxes[keep][:num_boxes]
    assert len(boxes) == num_boxes
    classes = torch.randint(0, num_classes, (len(boxes),), generator=g)
    return make_instances(boxes, classes, image_size)


def fpn_feature_sizes(image_size, strides=(8, 16, 32, 64, 128), divisibility=32):
    """Feature map sizes of a P3-P7 FPN for an image padded to ``divisibility``."""
    h, w = (-(-s // divisibility) * divisibility for s in image_size)
    sizes = []
    for s in strides:
        sizes.append((-(-h // s), -(-w // s)))
    return sizes


# ------------------------------------------------------------------------------ memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_increase_mb(fn):
    """(result of ``fn()``, peak resident memory during it minus the resident memory before,
    in MB; None where /proc/self/clear_refs cannot reset the peak)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak resident set) to the current size
        before = _status_kb("VmRSS")
    except OSError:
        return fn(), None
    result = fn()
    return result, (_status_kb("VmHWM") - before) / 1024.0


# ------------------------------------------------------------------------------ datasets
def write_png(path: Path, size=(96, 128), seed=0) -> Path:
    h, w = size
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_coco_dataset(folder: Path, images, categories=("a", "b", "c")):
    """A COCO json + PNG files. ``images``: list of (file stem, [(bbox xywh, category id)],
    size); category ids are json ids (1-based). Returns (json path, image root)."""
    root = folder / "images"
    root.mkdir(parents=True, exist_ok=True)
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
    }
    ann_id = 1
    for image_id, (stem, annos, size) in enumerate(images, start=1):
        write_png(root / f"{stem}.png", size, seed=image_id)
        coco["images"].append(
            {"id": image_id, "file_name": f"{stem}.png", "height": size[0], "width": size[1]}
        )
        for bbox, cat in annos:
            w, h = bbox[2], bbox[3]
            area = w * h if all(map(math.isfinite, (w, h))) else 0.0
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "bbox": list(bbox),
                    "category_id": cat,
                    "iscrowd": 0,
                    "area": max(area, 0.0),
                }
            )
            ann_id += 1
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))  # NaN is written as the (non-standard) NaN literal
    return path, root


def register_coco(name: str, json_file: Path, image_root: Path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_file), str(image_root))
    return name


def losses_by_iteration(output_dir, keys=None):
    """{iteration: {loss name: value}} from metrics.json (the last line of an iteration wins:
    a resumed run appends to the file of the interrupted one)."""
    out = {}
    for m in read_metrics(output_dir):
        if "total_loss" not in m:
            continue
        names = keys or [k for k in m if k == "total_loss" or k.startswith("loss_")]
        out[m["iteration"]] = {k: m[k] for k in names if k in m}
    return out


class SimulatedCrash(Exception):
    """Raised by :class:`CrashAfter`."""


class CrashAfter(HookBase):
    """A training hook that raises after the hooks before it (the periodic checkpointer, the
    writers) ran at iteration ``at``: an interrupted run, in-process."""

    def __init__(self, at):
        self.at = at

    def after_step(self):
        if self.trainer.iter == self.at:
            raise SimulatedCrash(f"simulated crash after iteration {self.at}")

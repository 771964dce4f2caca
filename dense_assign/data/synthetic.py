"""Built-in synthetic detection dataset ("synthetic shapes") for fast, self-contained experiments.

The dataset is generated deterministically from a seed the first time it is used, cached on disk
under ``$DETECTRON2_DATASETS`` (default ``./datasets``) and registered in detectron2's catalogs, so
that configs can name it like any other dataset::

    import dense_assign.data  # registers synthetic_shapes / synthetic_crowded / synthetic_tiny
    DatasetCatalog.get("synthetic_shapes_train")  # generates on first use (about a minute)

It is designed so that *label assignment matters*: shapes of 7 classes, several of which do not
fill their box (triangle, ring, cross, thin diagonal bar, hollow square), sizes log-uniform from
about 8 px to 60% of the image side, aspect ratios from 1:4 to 4:1, 1-30 objects per image that
overlap, occlude each other (later objects are painted over earlier ones) and are truncated at the
image borders, on textured noisy backgrounds (smooth gradients, low-frequency blobs, mid-frequency
texture, per-pixel Gaussian noise) with distractor clutter (dots, short lines, scribbles) that is
not annotated. Object colours are random (the class is carried by the shape only) but chosen to
contrast with the background under the object.

Layout of a generated dataset ``<root>/<name>/``::

    images/<id>.png                       all images of both splits (ids are unique across splits)
    annotations/instances_{train,val}.json    COCO json (``file_name`` relative to ``images/``)
    VOC/Annotations/<id>.xml              Pascal VOC xml, both splits
    VOC/ImageSets/Main/{train,val,trainval}.txt
    VOC/JPEGImages/<id>.jpg -> ../../images/<id>.png   (relative symlinks, see below)
    synthetic_params.json                 the stamp: generator version + all generator parameters

Registered names, for a dataset registered as ``name`` (see :func:`register_synthetic`):
``{name}_train`` / ``{name}_val`` (COCO style, ``evaluator_type="coco"``) and
``{name}_voc_train`` / ``{name}_voc_val`` (Pascal VOC style, ``evaluator_type="pascal_voc"``).

Decisions
---------
* **Boxes** are the exact extent of the object's own rendered binary mask (PIL ``ImageDraw`` on an
  ``L`` canvas of the image size), so they are tight around the drawn shape and clipped to the image
  (truncation). They are *amodal with respect to occlusion*: the box covers the whole shape even
  where later objects paint over it; objects that are less than ``min_visible_fraction`` (20%)
  visible or have fewer than ``min_visible_pixels`` visible pixels are drawn but not annotated.
  COCO ``bbox`` is ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` in integer pixel units, with
  ``(x1, y1)`` / ``(x2, y2)`` the first / last covered pixel, i.e. the box covers the pixels.
* **area** is the *box* area ``w * h`` (not the mask pixel count). COCOeval selects ground truth
  by ``area`` for the small/medium/large breakdown and computes the area of detections (boxes) as
  ``w * h``; using the box area for ground truth too keeps both sides on the same scale, and makes
  a thin ring or bar of a given extent count as the size of its box, not of its few pixels.
* **VOC boxes** are written as integers ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2 + 1,
  ymax = y2 + 1`` (1-based inclusive pixel indices, the VOC convention). detectron2's
  ``load_voc_instances`` subtracts 1 from xmin/ymin, which yields exactly the COCO box in XYXY form
  ``[x1, y1, x1 + w, y1 + h]``; the VOC evaluator parses them with ``int()``.
* **VOC year** is 2012: detectron2's ``PascalVOCDetectionEvaluator`` uses the 11-point
  interpolated AP only for ``year == 2007``; any other year gives the area under the full
  precision/recall curve (VOC2010+ metric), which is the more accurate one and closer to COCO AP50.
* **VOC images** are not duplicated: ``VOC/JPEGImages/<id>.jpg`` are *relative* symlinks to
  ``../../images/<id>.png`` (relative, so they survive the atomic rename of the dataset folder and
  moving/copying the whole dataset). Where symlinks are not available we fall back to hard links,
  then to copies. detectron2 opens images with PIL, which detects PNG content regardless of the
  ``.jpg`` extension. Note: detectron2's VOC loader cannot read a split with exactly one image
  (``np.loadtxt`` then returns a 0-d array); use 0 or >= 2 images per split for the VOC datasets.
* **Cache policy**: the dataset folder holds a stamp ``synthetic_params.json`` (generator version
  and all generator parameters). If the stamp matches the requested parameters the folder is reused
  as is. If it differs (other parameters or an older generator version) the dataset is *regenerated
  and replaces the old folder* (with a warning): the data is a pure function of the parameters, so
  the folder is a cache and nothing of value is lost. A folder that exists without a readable stamp
  was not made by this module, and is never deleted: that is an error (choose another root/name).
* **Interruption safety**: a dataset is generated into a hidden temporary folder next to the final
  one (``<root>/.<name>.tmp-<pid>-<random>``), the stamp is written last, and the folder is then
  atomically renamed into place. A killed generation leaves at most a hidden temporary folder (safe
  to delete), never a half dataset under the final name; an exception removes the temporary folder.
  Concurrent generations of the same dataset (e.g. several processes) are safe: the first rename
  wins and the others discard their copy.
* **Determinism**: every image is generated from its own ``np.random.default_rng([seed, split,
  index])`` stream, so it does not depend on the generation order or on the number of images of the
  other split; train and val use different streams. JSON and XML contain no timestamps or paths,
  so the same parameters give byte-identical annotation files and identical pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_PRESETS",
    "SyntheticParams",
    "SyntheticPaths",
    "make_synthetic_params",
    "generate_synthetic_image",
    "get_synthetic_object_masks",
    "generate_synthetic_dataset",
    "register_synthetic",
    "register_all_synthetic",
    "prepare_synthetic",
]

logger = logging.getLogger(__name__)

# Bump when the generated data changes for the same parameters: invalidates existing caches.
GENERATOR_VERSION = 1

#: All shape classes, in category order (category_id = index + 1 in the COCO json).
SYNTHETIC_CLASSES: Tuple[str, ...] = (
    "rectangle",  # filled, fills its box
    "ellipse",  # filled, ~79% of its box
    "triangle",  # filled, 50% of its box
    "ring",  # hollow ellipse
    "cross",  # plus sign
    "bar",  # thin bar along the box diagonal (rotated)
    "hollow_square",  # rectangle outline
)

#: Named variants registered by :func:`register_all_synthetic` (at ``import dense_assign.data``).
SYNTHETIC_PRESETS: Dict[str, Dict[str, Any]] = {
    "synthetic_shapes": {},  # the defaults of SyntheticParams
    "synthetic_crowded": dict(
        num_train=150,
        num_val=30,
        min_objects=100,
        max_objects=400,
        min_object_size=6.0,
        max_object_size=40.0,
        crowdedness=0.5,
        min_distractors=20,
        max_distractors=80,
    ),
    # The converging CPU benchmark (configs/Synthetic-Converge; README "The converging CPU
    # benchmark"): 128 px images, 1-8 objects of the four shapes that do not fill their boxes, so
    # that a small detector trains thousands of iterations in minutes on one core.
    "synthetic_small": dict(
        num_train=2000,
        num_val=200,
        min_objects=1,
        max_objects=8,
        min_object_size=10.0,
        max_object_frac=0.85,
        min_image_size=128,
        max_image_size=128,
        min_distractors=0,
        max_distractors=6,
        noise_std=6.0,
        classes=("triangle", "ring", "cross", "bar"),
    ),
    "synthetic_tiny": dict(
        num_train=8,
        num_val=4,
        min_objects=1,
        max_objects=8,
        min_image_size=320,
        max_image_size=400,
    ),
}

_SPLITS = ("train", "val")
_SPLIT_CODES = {"train": 0, "val": 1}
_STAMP_FILE = "synthetic_params.json"
_MIN_IMAGE_SIDE = 32
_MAX_IMAGE_SIDE = 8192


# ------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class SyntheticParams:
    """Generator parameters (all JSON-serializable; they form the cache stamp).

    Build it with :func:`make_synthetic_params` (or ``SyntheticParams(**kw)``): both validate and
    raise ``ValueError`` naming the bad parameter.

    Attributes:
        num_train / num_val: number of images per split.
        seed: non-negative int; base of the per-image random streams.
        min_objects / max_objects: number of objects drawn per image (inclusive). Objects that end
            up mostly occluded are not annotated; if fewer than ``min_objects`` remain annotated,
            more objects are added (best effort), so annotated counts stay in this range.
        min_object_size: smallest object scale ``sqrt(w * h)`` in px.
        max_object_frac: largest object scale as a fraction of the shorter image side.
        max_object_size: optional absolute cap (px) on the largest object scale.
        min_aspect / max_aspect: range of the box aspect ratio w / h (sampled log-uniformly).
        min_image_size / max_image_size: range of image width and height (sampled independently).
        crowdedness: in [0, 1]; probability that an object is placed next to an earlier one
            (clusters of overlapping objects) instead of uniformly over the image.
        min_distractors / max_distractors: number of unannotated clutter items (dots, short lines,
            scribbles) drawn on the background.
        noise_std: maximum std of the per-pixel Gaussian noise (each image draws its own std in
            ``[noise_std / 3, noise_std]``).
        min_contrast: desired RGB distance between an object's colour and the mean colour under it.
        min_visible_fraction: objects with a smaller visible fraction of their (in-image) mask are
            not annotated.
        min_visible_pixels: objects with fewer visible pixels are not annotated.
        classes: the classes to draw (a subset of :data:`SYNTHETIC_CLASSES`, in any order; the
            order defines the category ids).
    """

    num_train: int = 600
    num_val: int = 100
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 30
    min_object_size: float = 8.0
    max_object_frac: float = 0.6
    max_object_size: Optional[float] = None
    min_aspect: float = 0.25
    max_aspect: float = 4.0
    min_image_size: int = 320
    max_image_size: int = 640
    crowdedness: float = 0.3
    min_distractors: int = 5
    max_distractors: int = 40
    noise_std: float = 8.0
    min_contrast: float = 70.0
    min_visible_fraction: float = 0.2
    min_visible_pixels: int = 12
    classes: Tuple[str, ...] = SYNTHETIC_CLASSES

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(
                f"Invalid synthetic dataset parameter {name}={getattr(self, name)!r}: {why}"
            )

        def set_(name, value):
            object.__setattr__(self, name, value)

        for name in (
            "num_train",
            "num_val",
            "seed",
            "min_objects",
            "max_objects",
            "min_image_size",
            "max_image_size",
            "min_distractors",
            "max_distractors",
            "min_visible_pixels",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                bad(name, "must be an int")
            if v < 0:
                bad(name, "must be >= 0")
            set_(name, int(v))
        for name in (
            "min_object_size",
            "max_object_frac",
            "max_object_size",
            "min_aspect",
            "max_aspect",
            "crowdedness",
            "noise_std",
            "min_contrast",
            "min_visible_fraction",
        ):
            v = getattr(self, name)
            if v is None and name == "max_object_size":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                bad(name, "must be a number")
            if not math.isfinite(v):
                bad(name, "must be finite")
            set_(name, float(v))

        if self.min_objects > self.max_objects:
            bad("min_objects", f"must be <= max_objects ({self.max_objects})")
        if self.min_distractors > self.max_distractors:
            bad("min_distractors", f"must be <= max_distractors ({self.max_distractors})")
        for name in ("min_image_size", "max_image_size"):
            if not _MIN_IMAGE_SIDE <= getattr(self, name) <= _MAX_IMAGE_SIDE:
                bad(name, f"must be in [{_MIN_IMAGE_SIDE}, {_MAX_IMAGE_SIDE}]")
        if self.min_image_size > self.max_image_size:
            bad("min_image_size", f"must be <= max_image_size ({self.max_image_size})")
        if self.min_object_size < 2:
            bad("min_object_size", "must be >= 2 (px)")
        if not 0 < self.max_object_frac <= 2:
            bad("max_object_frac", "must be in (0, 2]")
        if self.max_object_size is not None and self.min_object_size > self.max_object_size:
            bad("min_object_size", f"must be <= max_object_size ({self.max_object_size})")
        if self.min_object_size > self.max_object_frac * self.max_image_size:
            bad(
                "min_object_size",
                f"must be <= max_object_frac * max_image_size "
                f"({self.max_object_frac} * {self.max_image_size})",
            )
        if self.min_aspect <= 0:
            bad("min_aspect", "must be > 0")
        if self.min_aspect > self.max_aspect:
            bad("min_aspect", f"must be <= max_aspect ({self.max_aspect})")
        if not 0 <= self.crowdedness <= 1:
            bad("crowdedness", "must be in [0, 1]")
        if not 0 <= self.noise_std <= 100:
            bad("noise_std", "must be in [0, 100]")
        if not 0 <= self.min_contrast <= 441:
            bad("min_contrast", "must be in [0, 441]")
        if not 0 <= self.min_visible_fraction <= 1:
            bad("min_visible_fraction", "must be in [0, 1]")
        if self.min_visible_pixels < 1:
            bad("min_visible_pixels", "must be >= 1")

        classes = self.classes
        if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
            bad("classes", "must be a list or tuple of class names")
        classes = tuple(classes)
        if not classes:
            bad("classes", "must not be empty")
        unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
        if unknown:
            bad("classes", f"unknown class(es) {unknown}; available: {list(SYNTHETIC_CLASSES)}")
        if len(set(classes)) != len(classes):
            bad("classes", "contains duplicates")
        set_("classes", classes)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-compatible dict (the cache stamp content)."""
        d = dataclasses.asdict(self)
        d["classes"] = list(d["classes"])
        return d


def make_synthetic_params(**generator_params) -> SyntheticParams:
    """Validated :class:`SyntheticParams`; unknown names also raise ``ValueError``."""
    known = {f.name for f in dataclasses.fields(SyntheticParams)}
    unknown = sorted(set(generator_params) - known)
    if unknown:
        raise ValueError(
            f"Unknown synthetic dataset parameter(s) {unknown}; valid: {sorted(known)}"
        )
    return SyntheticParams(**generator_params)


def _as_params(params: Optional[SyntheticParams], generator_params: Dict[str, Any]):
    if params is not None:
        if generator_params:
            raise ValueError(
                "Pass either params=SyntheticParams(...) or keyword parameters, not both"
            )
        if not isinstance(params, SyntheticParams):
            raise ValueError(f"params must be a SyntheticParams, got {type(params).__name__}")
        return params
    return make_synthetic_params(**generator_params)


# ----------------------------------------------------------------------------------- rendering
def _image_rng(params: SyntheticParams, split: str, index: int) -> np.random.Generator:
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return np.random.default_rng([params.seed, _SPLIT_CODES[split], int(index)])


def _smooth_noise(rng, height, width, cells, amplitude):
    """Smooth (bilinear, smoothstep-weighted) upsampling of a random grid: (H, W, 3) float32."""
    gh = max(2, int(round(cells * height / max(height, width)))) + 1
    gw = max(2, int(round(cells * width / max(height, width)))) + 1
    grid = rng.normal(0.0, amplitude, size=(gh, gw, 3)).astype(np.float32)

    def interp_matrix(n, g):
        pos = (np.arange(n, dtype=np.float64) + 0.5) * (g - 1) / n
        i0 = np.minimum(np.floor(pos).astype(np.int64), g - 2)
        t = pos - i0
        t = t * t * (3 - 2 * t)  # smoothstep: no visible grid creases
        m = np.zeros((n, g), dtype=np.float32)
        m[np.arange(n), i0] = 1 - t
        m[np.arange(n), i0 + 1] = t
        return m

    my, mx = interp_matrix(height, gh), interp_matrix(width, gw)
    tmp = (my @ grid.reshape(gh, gw * 3)).reshape(height, gw, 3)  # (H, gw, 3)
    return (tmp.transpose(0, 2, 1) @ mx.T).transpose(0, 2, 1)  # (H, W, 3)


def _background(rng, height, width) -> np.ndarray:
    """Textured background, float32 (H, W, 3), roughly in [0, 255]. Fully vectorized."""
    base = rng.uniform(50, 205, size=3).astype(np.float32)
    # Smooth linear gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    delta = rng.uniform(-70, 70, size=3).astype(np.float32)
    ys = (np.arange(height, dtype=np.float32) / height - 0.5) * np.float32(np.sin(angle))
    xs = (np.arange(width, dtype=np.float32) / width - 0.5) * np.float32(np.cos(angle))
    img = base + (ys[:, None, None] + xs[None, :, None]) * delta
    # Low-frequency blobs (coarse grid) and a mid-frequency texture.
    img += _smooth_noise(rng, height, width, rng.integers(2, 5), rng.uniform(15, 35))
    img += _smooth_noise(rng, height, width, rng.integers(12, 40), rng.uniform(4, 14))
    # A few soft Gaussian blobs: sum_k gy_k(y) gx_k(x) color_k as one matrix product.
    k = int(rng.integers(1, 5))
    cy = rng.uniform(0, height, size=k)
    cx = rng.uniform(0, width, size=k)
    sigma = rng.uniform(0.04, 0.2, size=k) * max(height, width)
    color = rng.uniform(-60, 60, size=(k, 3))
    gy = np.exp(-0.5 * ((np.arange(height)[:, None] - cy) / sigma) ** 2).astype(np.float32)
    gx = np.exp(-0.5 * ((np.arange(width)[:, None] - cx) / sigma) ** 2)  # (W, k)
    gxc = (gx[:, :, None] * color[None]).transpose(1, 0, 2).reshape(k, width * 3)
    img += (gy @ gxc.astype(np.float32)).reshape(height, width, 3)
    return img


def _draw_distractors(rng, image: Image.Image, params: SyntheticParams) -> None:
    """Unannotated clutter: dots, short lines and scribbles, drawn in place on an RGB image."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    n = int(rng.integers(params.min_distractors, params.max_distractors + 1))
    for _ in range(n):
        kind = int(rng.integers(0, 3))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if kind == 0:  # dot
            r = rng.uniform(0.8, 3.0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        elif kind == 1:  # short straight line
            length, angle = rng.uniform(4, 25), rng.uniform(0, 2 * np.pi)
            x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
            draw.line([(x, y), (x2, y2)], fill=color, width=1)
        else:  # scribble: a short random walk
            steps = int(rng.integers(3, 7))
            pts = np.cumsum(rng.normal(0, 5.0, size=(steps, 2)), axis=0) + (x, y)
            draw.line([tuple(p) for p in pts.tolist()], fill=color, width=int(rng.integers(1, 3)))


def _sample_shape(rng, cls: str, cx: float, cy: float, w: float, h: float):
    """Draw commands for one shape: a list of (method, args, kwargs) and its geometric bounds."""
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    short = min(w, h)
    cmds: List[Tuple[str, Any, Dict[str, Any]]] = []
    pad = 1.0
    if cls == "rectangle":
        r = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
        cmds.append(("rectangle", r, {}))
    elif cls == "ellipse":
        cmds.append(("ellipse", [x0, y0, x1, y1], {}))
    elif cls == "triangle":
        u = rng.uniform(0, 1)
        orient = int(rng.integers(0, 4))
        if orient == 0:  # apex on top
            pts = [(x0 + u * w, y0), (x1, y1), (x0, y1)]
        elif orient == 1:  # apex at the bottom
            pts = [(x0 + u * w, y1), (x1, y0), (x0, y0)]
        elif orient == 2:  # apex on the left
            pts = [(x0, y0 + u * h), (x1, y0), (x1, y1)]
        else:  # apex on the right
            pts = [(x1, y0 + u * h), (x0, y0), (x0, y1)]
        cmds.append(("polygon", pts, {}))
    elif cls == "ring":
        t = max(2, int(round(short * rng.uniform(0.1, 0.22))))
        cmds.append(("ellipse", [x0, y0, x1, y1], {"width": t, "outline_only": True}))
    elif cls == "hollow_square":
        t = max(2, int(round(short * rng.uniform(0.1, 0.22))))
        r = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
        cmds.append(("rectangle", r, {"width": t, "outline_only": True}))
    elif cls == "cross":
        t = max(2.0, short * rng.uniform(0.25, 0.4))
        cmds.append(
            ("rectangle", [round(x0), round(cy - t / 2), round(x1) - 1, round(cy + t / 2) - 1], {})
        )
        cmds.append(
            ("rectangle", [round(cx - t / 2), round(y0), round(cx + t / 2) - 1, round(y1) - 1], {})
        )
    elif cls == "bar":
        diag = math.hypot(w, h)
        t = max(3.0, diag * rng.uniform(0.06, 0.12))
        if rng.uniform() < 0.5:
            p0, p1 = np.array([x0, y0]), np.array([x1, y1])
        else:
            p0, p1 = np.array([x0, y1]), np.array([x1, y0])
        d = (p1 - p0) / max(diag, 1e-6)
        n = np.array([-d[1], d[0]]) * (t / 2)
        pts = [tuple(p0 + n), tuple(p1 + n), tuple(p1 - n), tuple(p0 - n)]
        cmds.append(("polygon", [(float(a), float(b)) for a, b in pts], {}))
        pad = t / 2 + 1
    else:  # pragma: no cover - guarded by SyntheticParams validation
        raise ValueError(f"unknown class {cls!r}")
    bounds = (x0 - pad - 2, y0 - pad - 2, x1 + pad + 2, y1 + pad + 2)
    return cmds, bounds


def _render(draw: ImageDraw.ImageDraw, cmds, fill: int) -> None:
    for method, args, kwargs in cmds:
        kwargs = dict(kwargs)
        outline_only = kwargs.pop("outline_only", False)
        if outline_only:
            getattr(draw, method)(args, outline=fill, **kwargs)
        else:
            getattr(draw, method)(args, fill=fill, **kwargs)


# Test hook: when True, check after every object that the object's pixels all lie in its region.
_CHECK_REGIONS = False


def _generate(params: SyntheticParams, split: str, index: int, want_masks: bool):
    rng = _image_rng(params, split, index)
    width = int(rng.integers(params.min_image_size, params.max_image_size + 1))
    height = int(rng.integers(params.min_image_size, params.max_image_size + 1))

    # Background + clutter.
    bg = np.clip(_background(rng, height, width), 0, 255).astype(np.uint8)
    bg_img = Image.fromarray(bg, mode="RGB")
    _draw_distractors(rng, bg_img, params)
    img = np.asarray(bg_img, dtype=np.float32).copy()

    # Objects.
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    owner = np.zeros((height, width), dtype=np.int32)  # 1 + index of the topmost object, 0 = bg
    side = min(width, height)
    size_hi = params.max_object_frac * side
    if params.max_object_size is not None:
        size_hi = min(size_hi, params.max_object_size)
    size_lo = min(params.min_object_size, size_hi)
    log_size = (math.log(size_lo), math.log(max(size_hi, size_lo)))
    log_aspect = (math.log(params.min_aspect), math.log(params.max_aspect))
    num_classes = len(params.classes)

    objects: List[Dict[str, Any]] = []  # in drawing order

    def add_object():
        cls_idx = int(rng.integers(0, num_classes))
        size = math.exp(rng.uniform(*log_size))
        aspect = math.exp(rng.uniform(*log_aspect))
        w = max(3.0, size * math.sqrt(aspect))
        h = max(3.0, size / math.sqrt(aspect))
        if objects and rng.uniform() < params.crowdedness:
            other = objects[int(rng.integers(0, len(objects)))]
            spread = 0.35 * (other["scale"] + size)
            cx = float(np.clip(other["center"][0] + rng.normal(0, spread), 0, width - 1))
            cy = float(np.clip(other["center"][1] + rng.normal(0, spread), 0, height - 1))
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        cmds, (bx0, by0, bx1, by1) = _sample_shape(rng, params.classes[cls_idx], cx, cy, w, h)
        # Region of the canvas that can contain the shape's pixels.
        l, t = max(0, math.floor(bx0)), max(0, math.floor(by0))
        r, b = min(width, math.ceil(bx1) + 1), min(height, math.ceil(by1) + 1)
        color_cands = rng.uniform(0, 255, size=(8, 3))
        shade = rng.uniform(-25, 25, size=2)
        truncated = int(
            cx - w / 2 < 0 or cy - h / 2 < 0 or cx + w / 2 > width or cy + h / 2 > height
        )
        if r <= l or b <= t:
            return
        _render(draw, cmds, 255)
        mask = np.asarray(canvas.crop((l, t, r, b))) > 0
        draw.rectangle([l, t, r - 1, b - 1], fill=0)
        if _CHECK_REGIONS:
            assert not np.asarray(canvas).any(), "shape pixels outside of its region"
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return
        # Colour: first candidate that contrasts enough with what lies under the object.
        under = img[t:b, l:r][mask].mean(axis=0)
        dist = np.linalg.norm(color_cands - under, axis=1)
        ok = np.flatnonzero(dist >= params.min_contrast)
        color = color_cands[ok[0] if len(ok) else int(np.argmax(dist))].astype(np.float32)
        # Mild linear shading across the object.
        gy = (np.arange(t, b, dtype=np.float32) - cy) / max(h, 1.0) * np.float32(shade[0])
        gx = (np.arange(l, r, dtype=np.float32) - cx) / max(w, 1.0) * np.float32(shade[1])
        fill = color + (gy[:, None] + gx[None, :])[:, :, None]
        img[t:b, l:r][mask] = fill[mask]
        owner[t:b, l:r][mask] = len(objects) + 1
        objects.append(
            dict(
                class_index=cls_idx,
                center=(cx, cy),
                scale=size,
                # Tight box of the own mask: first / last covered pixel (inclusive).
                x1=l + int(cols[0]),
                y1=t + int(rows[0]),
                x2=l + int(cols[-1]),
                y2=t + int(rows[-1]),
                pixels=int(mask.sum()),
                truncated=truncated,
                region=(l, t, r, b),
                mask=mask if want_masks else None,
            )
        )

    def kept_indices():
        visible = np.bincount(owner.ravel(), minlength=len(objects) + 1)[1:]
        return [
            i
            for i, o in enumerate(objects)
            if visible[i] >= params.min_visible_pixels
            and visible[i] >= params.min_visible_fraction * o["pixels"]
        ]

    num_objects = int(rng.integers(params.min_objects, params.max_objects + 1))
    for _ in range(num_objects):
        add_object()
    kept = kept_indices()
    # Best effort to honour min_objects: each new object is fully visible when drawn, so it can
    # only add itself to the annotated set (and at most remove others), never overshoot.
    extra_budget = 4 * params.min_objects + 20
    while len(kept) < params.min_objects and extra_budget > 0:
        add_object()
        kept = kept_indices()
        extra_budget -= 1

    # Per-pixel Gaussian noise over everything.
    sigma = rng.uniform(params.noise_std / 3, params.noise_std) if params.noise_std > 0 else 0.0
    if sigma > 0:
        img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(sigma)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    annotations = []
    masks = []
    for i in kept:
        o = objects[i]
        w, h = o["x2"] - o["x1"] + 1, o["y2"] - o["y1"] + 1
        annotations.append(
            {
                "category_id": o["class_index"] + 1,
                "bbox": [o["x1"], o["y1"], w, h],
                "area": w * h,
                "iscrowd": 0,
                "truncated": o["truncated"],
            }
        )
        if want_masks:
            full = np.zeros((height, width), dtype=bool)
            l, t, r, b = o["region"]
            full[t:b, l:r] = o["mask"]
            masks.append(full)
    return image, annotations, masks


def generate_synthetic_image(
    split: str, index: int, params: Optional[SyntheticParams] = None, **generator_params
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Generate one image of a split (deterministic in ``(params, split, index)``).

    Returns:
        image: uint8 array (H, W, 3), RGB.
        annotations: list of dicts with ``category_id`` (1-based), ``bbox`` (COCO XYWH, ints, see
            the module docstring), ``area`` (box area), ``iscrowd`` (0) and ``truncated`` (0/1),
            in drawing order (later annotations are drawn over earlier ones).
    """
    params = _as_params(params, generator_params)
    image, annotations, _ = _generate(params, split, index, want_masks=False)
    return image, annotations


def get_synthetic_object_masks(
    split: str, index: int, params: Optional[SyntheticParams] = None, **generator_params
) -> List[np.ndarray]:
    """The own binary masks (bool (H, W), before occlusion, clipped to the image) of the annotated
    objects of one image, in the order of the annotations of :func:`generate_synthetic_image`.
    Each annotation's box is exactly the extent of its mask."""
    params = _as_params(params, generator_params)
    return _generate(params, split, index, want_masks=True)[2]


# ------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated dataset lives (all absolute)."""

    dataset_dir: str
    image_root: str
    train_json: str
    val_json: str
    voc_dir: str
    stamp_file: str

    def json_file(self, split: str) -> str:
        return {"train": self.train_json, "val": self.val_json}[split]

    @classmethod
    def for_dir(cls, dataset_dir: str) -> "SyntheticPaths":
        d = os.path.abspath(dataset_dir)
        return cls(
            dataset_dir=d,
            image_root=os.path.join(d, "images"),
            train_json=os.path.join(d, "annotations", "instances_train.json"),
            val_json=os.path.join(d, "annotations", "instances_val.json"),
            voc_dir=os.path.join(d, "VOC"),
            stamp_file=os.path.join(d, _STAMP_FILE),
        )


def _stamp(params: SyntheticParams) -> Dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "params": params.to_dict()}


def _read_stamp(dataset_dir: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(dataset_dir, _STAMP_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _voc_xml(stem: str, width: int, height: int, annotations, classes) -> str:
    lines = [
        "<annotation>",
        "  <folder>VOC</folder>",
        f"  <filename>{stem}.jpg</filename>",
        "  <source><database>dense_assign synthetic shapes</database></source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for a in annotations:
        x1, y1, w, h = a["bbox"]
        lines += [
            "  <object>",
            f"    <name>{classes[a['category_id'] - 1]}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{a['truncated']}</truncated>",
            "    <difficult>0</difficult>",
            # 1-based inclusive pixel indices; detectron2 subtracts 1 from xmin / ymin on load.
            f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x1 + w}</xmax><ymax>{y1 + h}</ymax></bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _link_image(target_rel: str, link_path: str) -> None:
    """Relative symlink; falls back to a hard link, then to a copy."""
    try:
        os.symlink(target_rel, link_path)
        return
    except (OSError, NotImplementedError):
        pass
    src = os.path.normpath(os.path.join(os.path.dirname(link_path), target_rel))
    try:
        os.link(src, link_path)
    except OSError:
        shutil.copyfile(src, link_path)


def _write_image(path: str, image: np.ndarray) -> None:
    Image.fromarray(image, mode="RGB").save(path, format="PNG")


def _make_image_file(job) -> Tuple[int, int, List[Dict[str, Any]]]:
    """Generate one image and write its PNG (runs in worker processes)."""
    params, split, index, path = job
    image, annos, _ = _generate(params, split, index, want_masks=False)
    _write_image(path, image)
    return image.shape[1], image.shape[0], annos


def _default_num_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _imap_jobs(jobs, num_workers: int):
    """Yield ``_make_image_file(job)`` in order, with forked worker processes where possible.

    Output does not depend on ``num_workers`` (every image has its own random stream). Workers are
    forked (not spawned, which would re-run an unguarded ``__main__``); without ``fork`` or inside
    a daemonic process (e.g. a DataLoader worker) generation is sequential.
    """
    usable = (
        num_workers > 1
        and len(jobs) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )
    if not usable:
        yield from map(_make_image_file, jobs)
        return
    with multiprocessing.get_context("fork").Pool(min(num_workers, len(jobs))) as pool:
        yield from pool.imap(_make_image_file, jobs, chunksize=4)


def _collect(results, entries, coco, paths: "SyntheticPaths", params, log_name: str) -> None:
    """Write the VOC xml and image links and gather the COCO records of the images, in order."""
    voc_ann = os.path.join(paths.voc_dir, "Annotations")
    voc_img = os.path.join(paths.voc_dir, "JPEGImages")
    total = len(entries)
    start = time.perf_counter()
    log_every = max(1, total // 10)
    for done, ((split, _, image_id, stem), (width, height, annos)) in enumerate(
        zip(entries, results), start=1
    ):
        _link_image(
            os.path.join("..", "..", "images", stem + ".png"), os.path.join(voc_img, stem + ".jpg")
        )
        with open(os.path.join(voc_ann, stem + ".xml"), "w") as f:
            f.write(_voc_xml(stem, width, height, annos, params.classes))
        data = coco[split]
        data["images"].append(
            {"id": image_id, "file_name": stem + ".png", "width": width, "height": height}
        )
        for a in annos:
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": a["category_id"],
                    "bbox": a["bbox"],
                    "area": a["area"],
                    "iscrowd": 0,
                }
            )
        if done % log_every == 0 or done == total:
            logger.info(
                f"Synthetic dataset {log_name}: {done}/{total} images "
                f"({time.perf_counter() - start:.1f}s)"
            )


def _write_dataset(out_dir: str, params: SyntheticParams, log_name: str, num_workers: int):
    paths = SyntheticPaths.for_dir(out_dir)
    voc_sets = os.path.join(paths.voc_dir, "ImageSets", "Main")
    for d in (
        paths.image_root,
        os.path.dirname(paths.train_json),
        os.path.join(paths.voc_dir, "Annotations"),
        os.path.join(paths.voc_dir, "JPEGImages"),
        voc_sets,
    ):
        os.makedirs(d, exist_ok=True)

    total = params.num_train + params.num_val
    digits = max(6, len(str(total)))
    # (split, index, image_id, stem) of every image, train first; ids are unique across splits.
    entries = []
    for split in _SPLITS:
        num = params.num_train if split == "train" else params.num_val
        id_offset = 0 if split == "train" else params.num_train
        for index in range(num):
            image_id = id_offset + index + 1
            entries.append((split, index, image_id, f"{image_id:0{digits}d}"))
    jobs = [(params, e[0], e[1], os.path.join(paths.image_root, e[3] + ".png")) for e in entries]

    coco = {
        split: {
            "info": {
                "description": "dense_assign synthetic shapes dataset",
                "version": str(GENERATOR_VERSION),
                "split": split,
                "params": params.to_dict(),
            },
            "licenses": [],
            "images": [],
            "annotations": [],
            "categories": [
                {"id": i + 1, "name": c, "supercategory": "shape"}
                for i, c in enumerate(params.classes)
            ],
        }
        for split in _SPLITS
    }
    results = _imap_jobs(jobs, num_workers)
    try:
        _collect(results, entries, coco, paths, params, log_name)
    finally:
        results.close()  # stops the worker pool early on errors

    for split in _SPLITS:
        with open(paths.json_file(split), "w") as f:
            json.dump(coco[split], f)
        with open(os.path.join(voc_sets, split + ".txt"), "w") as f:
            f.write("".join(e[3] + "\n" for e in entries if e[0] == split))
    with open(os.path.join(voc_sets, "trainval.txt"), "w") as f:
        f.write("".join(e[3] + "\n" for e in entries))


_GEN_LOCK = threading.Lock()


def generate_synthetic_dataset(
    dataset_dir: str,
    params: Optional[SyntheticParams] = None,
    *,
    num_workers: Optional[int] = None,
    **generator_params,
) -> SyntheticPaths:
    """Generate the dataset into ``dataset_dir`` unless a matching one is already there.

    Either pass ``params`` or the generator parameters as keywords (see :class:`SyntheticParams`).
    ``num_workers`` (default: number of usable CPUs, at most 8) forked processes render the
    images; the output does not depend on it. See the module docstring for the layout, the cache
    policy (a folder with another stamp is regenerated and replaced; a folder without a stamp is an
    error) and interruption safety. Returns the :class:`SyntheticPaths` of the dataset.
    """
    params = _as_params(params, generator_params)
    paths = SyntheticPaths.for_dir(dataset_dir)
    final = paths.dataset_dir
    expected = _stamp(params)
    with _GEN_LOCK:
        found = _read_stamp(final)
        if found == expected:
            return paths
        if os.path.lexists(final):
            if found is None:
                raise RuntimeError(
                    f"{final} exists but has no valid {_STAMP_FILE} stamp, so it was not made by "
                    f"the synthetic dataset generator (or is damaged); refusing to overwrite it. "
                    f"Delete it or choose another root / dataset name."
                )
            logger.warning(
                f"Synthetic dataset at {final} was generated with other parameters or by another "
                f"generator version; regenerating it."
            )
        parent, base = os.path.split(final)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            logger.info(
                f"Generating synthetic dataset {base} in {final}: {params.num_train} train + "
                f"{params.num_val} val images ..."
            )
            start = time.perf_counter()
            if num_workers is None:
                num_workers = _default_num_workers()
            _write_dataset(tmp, params, base, num_workers)
            # The stamp is written last: a folder with a stamp is complete.
            with open(os.path.join(tmp, _STAMP_FILE), "w") as f:
                json.dump(expected, f, indent=1, sort_keys=True)
            _install(tmp, final, expected)
            logger.info(
                f"Generated synthetic dataset {base} ({params.num_train + params.num_val} "
                f"images) in {time.perf_counter() - start:.1f}s"
            )
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _install(tmp: str, final: str, expected: Dict[str, Any]) -> None:
    """Atomically move the finished ``tmp`` folder to ``final`` (replacing a stale dataset)."""
    old = None
    if os.path.lexists(final):
        if _read_stamp(final) == expected:  # another process finished first
            return
        old = f"{final}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if _read_stamp(final) != expected:  # not a concurrent generation of the same data
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -------------------------------------------------------------------------------- registration
_SUFFIXES = ("_voc_train", "_voc_val", "_train", "_val")
_META_KEY = "synthetic_spec"


def _default_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def _split_names(name: str) -> Dict[str, Tuple[str, str]]:
    return {
        f"{name}_train": ("coco", "train"),
        f"{name}_val": ("coco", "val"),
        f"{name}_voc_train": ("voc", "train"),
        f"{name}_voc_val": ("voc", "val"),
    }


def _spec_of(split_name: str) -> Optional[Dict[str, Any]]:
    from detectron2.data import MetadataCatalog

    if split_name not in MetadataCatalog.list():
        return None
    return MetadataCatalog.get(split_name).get(_META_KEY, None)


def _load_split(name: str, split_name: str):
    kind, split = _split_names(name)[split_name]
    paths = prepare_synthetic(split_name)
    spec = _spec_of(split_name)
    classes = list(spec["params"]["classes"])
    if kind == "coco":
        from detectron2.data.datasets import load_coco_json

        return load_coco_json(paths.json_file(split), paths.image_root, split_name)
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    return load_voc_instances(paths.voc_dir, split, classes)


def register_synthetic(name: str, root: Optional[str] = None, **generator_params) -> List[str]:
    """Register a synthetic dataset variant in detectron2's catalogs (lazily: nothing is generated
    until a split is loaded with ``DatasetCatalog.get`` or :func:`prepare_synthetic` is called).

    Registers ``{name}_train``, ``{name}_val`` (COCO style) and ``{name}_voc_train``,
    ``{name}_voc_val`` (Pascal VOC style), data in ``<root>/<name>/`` with ``root`` defaulting to
    ``$DETECTRON2_DATASETS`` (or ``./datasets``), made absolute now.

    Registering the same name again with the same root and parameters is a no-op; with other
    parameters it replaces the earlier registration (with a warning). A name already registered
    by something else raises ``ValueError``. Returns the four registered dataset names.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or os.sep in name
    ):
        raise ValueError(f"Invalid synthetic dataset name={name!r}: must be a plain folder name")
    params = make_synthetic_params(**generator_params)
    root = os.path.abspath(_default_root() if root is None else os.path.expanduser(root))
    paths = SyntheticPaths.for_dir(os.path.join(root, name))
    spec = {"name": name, "dataset_dir": paths.dataset_dir, "params": params.to_dict()}

    split_names = _split_names(name)
    registered = set(DatasetCatalog.list())
    existing = [n for n in split_names if n in registered]
    if existing:
        specs = [_spec_of(n) for n in existing]
        if any(s is None for s in specs):
            raise ValueError(
                f"Cannot register synthetic dataset name={name!r}: {existing} already registered "
                f"by something else"
            )
        if len(existing) == len(split_names) and all(s == spec for s in specs):
            return list(split_names)
        logger.warning(f"Re-registering synthetic dataset {name} with new parameters / root")
        for n in existing:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)

    classes = list(params.classes)
    for split_name, (kind, split) in split_names.items():
        DatasetCatalog.register(split_name, functools.partial(_load_split, name, split_name))
        meta = MetadataCatalog.get(split_name)
        if kind == "coco":
            meta.set(
                thing_classes=classes,
                # As detectron2's load_coco_json sets it: json category ids 1..K -> 0..K-1.
                thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(classes))},
                json_file=paths.json_file(split),
                image_root=paths.image_root,
                evaluator_type="coco",
            )
        else:
            meta.set(
                thing_classes=classes,
                dirname=paths.voc_dir,
                year=2012,  # not 2007: the evaluator then uses the full-curve (VOC2010+) AP
                split=split,
                evaluator_type="pascal_voc",
            )
        meta.set(**{_META_KEY: spec})
    return list(split_names)


def register_all_synthetic(root: Optional[str] = None) -> None:
    """Register all :data:`SYNTHETIC_PRESETS` (idempotent); ``import dense_assign.data`` does."""
    for name, preset in SYNTHETIC_PRESETS.items():
        register_synthetic(name, root=root, **preset)


def prepare_synthetic(name_or_split_name: str) -> SyntheticPaths:
    """Generate (if needed) a registered synthetic dataset and return its paths.

    Accepts the registered base name (``"synthetic_shapes"``) or any of its split names
    (``"synthetic_shapes_train"``, ``"synthetic_shapes_voc_val"``, ...).
    """
    spec = None
    for split_name in [name_or_split_name] + [name_or_split_name + s for s in _SUFFIXES]:
        spec = _spec_of(split_name)
        if spec is not None:
            break
    if spec is None:
        raise KeyError(
            f"{name_or_split_name!r} is not a registered synthetic dataset (see register_synthetic)"
        )
    return generate_synthetic_dataset(spec["dataset_dir"], **spec["params"])

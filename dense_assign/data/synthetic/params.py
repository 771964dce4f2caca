"""Parameters of the synthetic dataset: the shape classes, :class:`SyntheticParams` (validated
generator parameters, also the cache stamp) and the named dataset specs (:data:`SYNTHETIC_PRESETS`).

The split codes and the image side limits that the parameters and the renderer share live here
too, as does :data:`GENERATOR_VERSION` (bumped when the data changes for the same parameters).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

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
_MIN_IMAGE_SIDE = 32
_MAX_IMAGE_SIDE = 8192


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

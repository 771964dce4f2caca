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

Registered names, for a dataset registered as ``name`` (see :func:`register_synthetic`):
``{name}_train`` / ``{name}_val`` (COCO style, ``evaluator_type="coco"``) and
``{name}_voc_train`` / ``{name}_voc_val`` (Pascal VOC style, ``evaluator_type="pascal_voc"``).

The package, one module per concern (this one re-exports the public names):

* :mod:`.params` -- the shape classes, the generator parameters (:class:`SyntheticParams`,
  :func:`make_synthetic_params`) and the named dataset specs (:data:`SYNTHETIC_PRESETS`).
* :mod:`.rendering` -- one image: background, distractors, shapes, boxes and masks
  (:func:`generate_synthetic_image`, :func:`get_synthetic_object_masks`); the box conventions.
* :mod:`.layout` -- the dataset on disk (:class:`SyntheticPaths`): files, COCO json, VOC xml and
  image links, the stamp and cache policy, the atomic install (:func:`generate_synthetic_dataset`).
* :mod:`.registration` -- detectron2 catalog registration and lazy generation
  (:func:`register_synthetic`, :func:`register_all_synthetic`, :func:`prepare_synthetic`).
"""

from .layout import SyntheticPaths, generate_synthetic_dataset
from .params import SYNTHETIC_CLASSES, SYNTHETIC_PRESETS, SyntheticParams, make_synthetic_params
from .registration import prepare_synthetic, register_all_synthetic, register_synthetic
from .rendering import generate_synthetic_image, get_synthetic_object_masks

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

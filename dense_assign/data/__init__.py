"""Datasets for dense_assign.

Importing this package registers the built-in synthetic detection datasets in detectron2's
``DatasetCatalog`` / ``MetadataCatalog`` (lazily: nothing is generated until a dataset is loaded):
``synthetic_shapes_{train,val}``, ``synthetic_crowded_{train,val}``, ``synthetic_tiny_{train,val}``
and their Pascal VOC twins ``*_voc_{train,val}``. See :mod:`dense_assign.data.synthetic`.
:mod:`dense_assign.data.checks` checks dataset dicts and image loading before training.
"""

from .checks import (
    CheckedMapper,
    DatasetError,
    ImageLoadError,
    check_dataset_dicts,
)
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PRESETS,
    SyntheticParams,
    SyntheticPaths,
    generate_synthetic_dataset,
    generate_synthetic_image,
    get_synthetic_object_masks,
    make_synthetic_params,
    prepare_synthetic,
    register_all_synthetic,
    register_synthetic,
)

# Idempotent: a second registration with the same parameters is a no-op.
register_all_synthetic()

__all__ = [
    "CheckedMapper",
    "DatasetError",
    "ImageLoadError",
    "check_dataset_dicts",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_PRESETS",
    "SyntheticParams",
    "SyntheticPaths",
    "generate_synthetic_dataset",
    "generate_synthetic_image",
    "get_synthetic_object_masks",
    "make_synthetic_params",
    "prepare_synthetic",
    "register_all_synthetic",
    "register_synthetic",
]

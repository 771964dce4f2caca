"""Registration of synthetic datasets in detectron2's ``DatasetCatalog`` / ``MetadataCatalog``
(:func:`register_synthetic`, :func:`register_all_synthetic`), lazy generation on first use
(:func:`prepare_synthetic`) and the loading of a registered split.

Registered names, for a dataset registered as ``name`` (see :func:`register_synthetic`):
``{name}_train`` / ``{name}_val`` (COCO style, ``evaluator_type="coco"``) and
``{name}_voc_train`` / ``{name}_voc_val`` (Pascal VOC style, ``evaluator_type="pascal_voc"``).

* **VOC year** is 2012: detectron2's ``PascalVOCDetectionEvaluator`` uses the 11-point
  interpolated AP only for ``year == 2007``; any other year gives the area under the full
  precision/recall curve (VOC2010+ metric), which is the more accurate one and closer to COCO AP50.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from .layout import SyntheticPaths, generate_synthetic_dataset
from .params import SYNTHETIC_PRESETS, make_synthetic_params

logger = logging.getLogger(__name__)


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

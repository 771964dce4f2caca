"""Checks of detection data before it reaches a model: dataset dicts and image loading.

detectron2 loads a dataset into "dataset dicts" (one per image, with ``annotations``) and maps each
to a model input with a mapper (``DatasetMapper``: read the image, augment, boxes to
``Instances``). Both steps accept things that later fail far from their cause, or silently:

* a json file that does not parse fails inside pycocotools with the parser's message only;
* a category id outside the dataset's classes reaches the loss as an out-of-range class index;
* a NaN, zero-size, negative-size or out-of-image box is dropped silently by the mapper (or, from
  a custom mapper, reaches the assigner);
* an unreadable or truncated image fails in a data-loader worker without the file's name.

:func:`check_dataset_dicts` is one pass over the dataset dicts when a data loader is built, before
training starts. Its policy:

=======================================  ====================================================
problem                                   what happens
=======================================  ====================================================
category id outside [0, #classes)         :class:`DatasetError` naming the file, the image
                                          and the annotation (and the count of such ones)
image without ``file_name``, image file   :class:`DatasetError` naming the images
missing on a local disk
box with a NaN / infinite coordinate      dropped, counted by reason in the log (with the
box of zero width or height               first examples: file, annotation index, bbox)
box of negative width or height
box entirely outside the image
image left without annotations            removed when the loader filters empty images
                                          (``filter_empty``, detectron2's default for
                                          training), counted in the log
=======================================  ====================================================

(Images that have no annotation in the file at all are removed by detectron2's own
``get_detection_dataset_dicts(filter_empty=True)``, which logs their count.)

:class:`CheckedMapper` wraps a mapper so that any error while reading or mapping an image is
raised as :class:`ImageLoadError` naming the file and the image id.
"""

import logging
import math
import numbers
import os
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence

from detectron2.structures import BoxMode

__all__ = [
    "DatasetError",
    "ImageLoadError",
    "DROP_REASONS",
    "check_dataset_dicts",
    "CheckedMapper",
]

logger = logging.getLogger(__name__)

#: Why a box is dropped by :func:`check_dataset_dicts`, in the order they are tested.
DROP_REASONS = OrderedDict(
    [
        ("non_finite", "with a NaN or infinite coordinate"),
        ("negative_size", "with a negative width or height"),
        ("zero_size", "with zero width or height"),
        ("outside_image", "entirely outside the image"),
    ]
)
_MAX_EXAMPLES = 3
_MAX_ERRORS_LISTED = 5


class DatasetError(ValueError):
    """A dataset that cannot be trained or evaluated on as it is; the message names the dataset,
    the file, the image and the annotation at fault."""


class ImageLoadError(RuntimeError):
    """An image that could not be read or mapped to a model input; the message names the file."""


def _describe(record: Dict[str, Any]) -> str:
    name = record.get("file_name", "<no file_name>")
    image_id = record.get("image_id", None)
    return f"{name}" + (f" (image_id={image_id})" if image_id is not None else "")


def _annotation_label(index: int, anno: Dict[str, Any]) -> str:
    return f"annotation {index}" + (f" (id={anno['id']})" if "id" in anno else "")


def _box_problem(anno: Dict[str, Any], width, height) -> Optional[str]:
    """The :data:`DROP_REASONS` key of a bad box, or None for a usable one."""
    bbox = anno.get("bbox", None)
    if bbox is None:
        return None  # no box (e.g. segmentation only): not this check's business
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return "non_finite"
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        return "non_finite"
    mode = anno.get("bbox_mode", BoxMode.XYWH_ABS)
    if mode not in (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS):
        return None  # relative or rotated modes: left to the mapper
    x1, y1, x2, y2 = BoxMode.convert(values, mode, BoxMode.XYXY_ABS)
    w, h = x2 - x1, y2 - y1
    if w < 0 or h < 0:
        return "negative_size"
    if w == 0 or h == 0:
        return "zero_size"
    if width is not None and height is not None:
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            return "outside_image"
    return None


def check_dataset_dicts(
    dataset_dicts: List[Dict[str, Any]],
    dataset_names: Sequence[str] = (),
    num_classes: Optional[int] = None,
    filter_empty: bool = True,
    drop_bad_boxes: bool = True,
    check_files: bool = True,
) -> List[Dict[str, Any]]:
    """Check detection dataset dicts with the policy of the module docstring.

    Args:
        dataset_names: the datasets the dicts come from (named in messages).
        num_classes: the number of classes; category ids must be in ``[0, num_classes)``.
            None: category ids are not checked.
        filter_empty: remove images that are left without annotations after dropping boxes
            (images that had none to begin with are kept: detectron2's ``filter_empty`` removes
            those before).
        drop_bad_boxes: drop the bad boxes (training); False only counts them (evaluation: the
            evaluator reads the annotation file itself).
        check_files: check that the image files on a local disk exist.

    Returns the dicts to use (the input list itself when nothing was dropped); raises
    :class:`DatasetError` for the errors of the module docstring.
    """
    where = f"dataset(s) {list(dataset_names)}" if dataset_names else "the dataset"
    bad_category: List[str] = []
    num_bad_category = 0
    no_file: List[str] = []
    missing_files: List[str] = []
    num_missing = 0
    dropped = {reason: 0 for reason in DROP_REASONS}
    examples: Dict[str, List[str]] = {reason: [] for reason in DROP_REASONS}
    num_boxes = 0
    emptied = 0
    changed = False
    checked_dirs: Dict[str, bool] = {}
    result: List[Dict[str, Any]] = []

    for record in dataset_dicts:
        file_name = record.get("file_name", None)
        if not file_name:
            if len(no_file) < _MAX_ERRORS_LISTED:
                no_file.append(f"image_id={record.get('image_id', '?')}")
        elif check_files and "://" not in str(file_name):
            folder = os.path.dirname(str(file_name))
            if folder not in checked_dirs:
                checked_dirs[folder] = os.path.isdir(folder)
            if not checked_dirs[folder] or not os.path.isfile(file_name):
                num_missing += 1
                if len(missing_files) < _MAX_ERRORS_LISTED:
                    missing_files.append(_describe(record))

        annotations = record.get("annotations", None)
        if annotations is None:
            result.append(record)
            continue
        width, height = record.get("width", None), record.get("height", None)
        kept = []
        for index, anno in enumerate(annotations):
            num_boxes += 1
            if num_classes is not None and "category_id" in anno:
                cat = anno["category_id"]
                if (
                    not isinstance(cat, numbers.Integral)
                    or isinstance(cat, bool)
                    or not 0 <= cat < num_classes
                ):
                    num_bad_category += 1
                    if len(bad_category) < _MAX_ERRORS_LISTED:
                        bad_category.append(
                            f"{_describe(record)} {_annotation_label(index, anno)}: "
                            f"category_id={cat!r}"
                        )
                    continue
            problem = _box_problem(anno, width, height)
            if problem is None:
                kept.append(anno)
                continue
            dropped[problem] += 1
            if len(examples[problem]) < _MAX_EXAMPLES:
                examples[problem].append(
                    f"{_describe(record)} {_annotation_label(index, anno)} bbox={anno.get('bbox')}"
                )
            if not drop_bad_boxes:
                kept.append(anno)
        if len(kept) != len(annotations):
            changed = True
            record = dict(record, annotations=kept)
        if filter_empty and annotations and not kept:
            emptied += 1
            continue
        result.append(record)

    if num_bad_category:
        raise DatasetError(
            f"{num_bad_category} annotation(s) of {where} have a category id outside "
            f"[0, {num_classes}) (the dataset's {num_classes} classes, model.num_classes), e.g.: "
            + "; ".join(bad_category)
            + ". Fix the annotation file, or register the dataset with the right classes."
        )
    if no_file:
        raise DatasetError(f"Images of {where} have no 'file_name': " + ", ".join(no_file))
    if num_missing:
        raise DatasetError(
            f"{num_missing} image file(s) of {where} do not exist, e.g.: "
            + ", ".join(missing_files)
            + " (check $DETECTRON2_DATASETS and the image root of the dataset)"
        )

    total_bad = sum(dropped.values())
    if total_bad:
        action = "dropped" if drop_bad_boxes else "found (kept: evaluation uses the file as it is)"
        parts = [f"{n} {DROP_REASONS[r]}" for r, n in dropped.items() if n]
        shown = [e for r in DROP_REASONS for e in examples[r]]
        logger.warning(
            f"Dataset check of {where}: {action} {total_bad} of {num_boxes} boxes: "
            + ", ".join(parts)
            + ". Examples: "
            + "; ".join(shown)
        )
    if emptied:
        logger.warning(
            f"Dataset check of {where}: removed {emptied} image(s) left without annotations "
            f"after dropping their boxes; {len(result)} images left"
        )
    if not result:
        raise DatasetError(f"No images left in {where} after the dataset check")
    if total_bad == 0 and not emptied:
        logger.info(
            f"Dataset check of {where}: {len(result)} images, {num_boxes} boxes, all usable"
        )
    return result if (changed or emptied) else dataset_dicts


class CheckedMapper:
    """Wraps a dataset mapper: an error while reading or mapping an image is raised again as
    :class:`ImageLoadError` naming the file and the image id (the original error is chained, and
    its type and message are in the new message, so that they survive a data-loader worker)."""

    def __init__(self, mapper: Callable[[Dict[str, Any]], Any]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict[str, Any]):
        try:
            return self.mapper(dataset_dict)
        except ImageLoadError:
            raise
        except Exception as e:
            raise ImageLoadError(
                f"Cannot load image {_describe(dataset_dict)}: {type(e).__name__}: {e}. "
                "Replace the file or remove the image from the annotation file."
            ) from e

    def __repr__(self):
        return f"CheckedMapper({self.mapper!r})"

"""Checks of detection data before it reaches a model: dataset dicts and image loading.

detectron2 loads a dataset into "dataset dicts" (one per image, with ``annotations``) and maps each
to a model input with a mapper (``DatasetMapper``: read the image, augment, boxes to
``Instances``). Both steps accept things that later fail far from their cause, or silently:

* a json file that does not parse fails inside pycocotools with the parser's message only;
* a category id outside the dataset's classes reaches the loss as an out-of-range class index;
* a NaN, zero-size, negative-size or out-of-image box is dropped silently by the mapper (or, from
  a custom mapper, reaches the assigner);
* an unreadable, truncated or non-image file, or an image whose size differs from the json's,
  fails at the first iteration that draws it (or in the final evaluation) in a data-loader worker.

:func:`check_dataset_dicts` is one pass over the dataset dicts when a data loader is built, before
training starts. Its policy:

=======================================  ====================================================
problem                                   what happens
=======================================  ====================================================
category id outside [0, #classes)         :class:`DatasetError` naming the file, the image
(the dataset's classes and, when given,   and the annotation (and the count of such ones)
``num_classes`` of the model)
image without ``file_name``, image file   :class:`DatasetError` naming the images
missing on a local disk
box with a NaN / infinite coordinate      dropped, counted by reason in the log (with the
box of zero width or height               first examples: file, annotation index, bbox)
box of negative width or height
box entirely outside the image
image left without annotations            removed when the loader filters empty images
                                          (``filter_empty``, detectron2's default for
                                          training), counted in the log
image file that cannot be read, is not    training set: dropped; test set: :class:`DatasetError`
an image, is truncated or corrupt, or     (the evaluation reads every image of the json). Both
whose size (after the EXIF orientation)   in one message: the count per problem and the first
differs from the json's width / height    files (:func:`inspect_image`, cached per file)
=======================================  ====================================================

**COCO json files** (datasets whose metadata has a ``json_file``, e.g. ``register_coco_instances``;
:func:`check_coco_json`, run by ``train_net.py``'s config check before the model is built): an
image id that appears more than once in ``images``, or an annotation whose ``image_id`` is not in
``images``, is a :class:`DatasetError` naming the json and the ids (the first few and the count).
detectron2's ``load_coco_json`` would keep one image per id (with the annotations of all) and drop
the others' annotations with only a warning, and the COCO evaluator would compare with the wrong
ground truth. :func:`dataset_classes` gives the classes of a dataset as the loaders will see them
(from the json's ``categories`` when the metadata has no ``thing_classes`` yet: those are set only
when the json is loaded), and the class ids its annotations use, for the check of
``model.num_classes``. One ``json.load`` per json file; the summary is cached per file (absolute
path, size, mtime, ctime) in memory and under :func:`json_check_cache_dir`.

**Image files.** :func:`inspect_image` opens each image's header (format and size, no pixel
decoding), applies the EXIF orientation as detectron2's ``read_image`` does (rotated JPEGs are
compared transposed, as ``check_image_size`` compares them), and takes a PNG that ends with its
IEND chunk or a JPEG that ends with its EOI marker (FFD9) as complete; any other file (another
format, bytes after the end marker, a missing end marker) is decoded to decide, with the same PIL
that reads it for training. On the 2000 PNGs of ``synthetic_small`` this costs ~0.5 s (a full
decode of every image: ~1.5 s).

The results are cached per file in one small json per dataset (list) under
:func:`image_check_cache_dir` (``$DENSE_ASSIGN_CACHE_DIR``, default ``~/.cache/dense_assign``:
datasets are often read-only, and an output folder per run would make every new run cold). An
entry is reused only when the file's absolute path, size, mtime and ctime are those it was
checked with (a rewrite that keeps the size and restores the mtime still changes the ctime), and
with the same check version, PIL version and ``ImageFile.LOAD_TRUNCATED_IMAGES``; the size is
compared with the json's on every run. A cache that cannot be read or written is ignored.

(Images that have no annotation in the file at all are removed by detectron2's own
``get_detection_dataset_dicts(filter_empty=True)``, which logs their count.)

:class:`CheckedMapper` wraps a mapper so that any error while reading or mapping an image is
raised as :class:`ImageLoadError` naming the file and the image id (an image changed after the
check); detectron2's training loop then logs it as one line (not its traceback), and
``train_net.py`` prints :func:`short_error`'s one line, also for an error re-raised from a
data-loader worker or another process.
"""

import hashlib
import json
import logging
import math
import numbers
import os
import re
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from detectron2.structures import BoxMode
from PIL import Image, ImageFile, UnidentifiedImageError

from ..fileio import atomic_write

__all__ = [
    "DatasetError",
    "ImageLoadError",
    "short_error",
    "DROP_REASONS",
    "check_dataset_dicts",
    "IMAGE_PROBLEMS",
    "inspect_image",
    "image_check_cache_dir",
    "CheckedMapper",
    "coco_json_summary",
    "check_coco_json",
    "dataset_classes",
    "json_check_cache_dir",
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
    """An image that could not be read or mapped to a model input; the message names the file.

    Raised again in the main process from a data-loader worker (torch puts the worker's
    traceback in the message) or from a ``launch`` worker process; :func:`short_error` finds
    the one line of the original message in both."""


def short_error(error: BaseException) -> Optional[str]:
    """``ImageLoadError: Cannot load image ...``: the message of an :class:`ImageLoadError`
    raised here, or of one that ended a data-loader worker or another process (whose traceback
    text is the message of the error re-raised here: its last line); None for other errors."""
    text = str(error)
    if isinstance(error, ImageLoadError) and "Traceback" not in text:
        return f"ImageLoadError: {text}"
    lines = text.strip().splitlines()
    # the last line of a traceback is the error that ended it
    match = re.match(r"^(?:[\w.]+\.)?ImageLoadError: (.*)$", lines[-1].strip()) if lines else None
    return f"ImageLoadError: {match.group(1)}" if match else None


class _ShortImageLoadErrors(logging.Filter):
    """On detectron2's training-loop logger: ``Exception during training:`` with an
    :class:`ImageLoadError` is logged as one line (the error is raised on, and ``train_net.py``
    prints it once) instead of a traceback that Python prints a second time."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        line = short_error(exc) if exc is not None else None
        if line is not None:
            record.msg = f"{record.getMessage()} {line}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_LOG_FILTER = _ShortImageLoadErrors()


def _shorten_training_loop_errors() -> None:
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    if _LOG_FILTER not in train_loop.filters:
        train_loop.addFilter(_LOG_FILTER)


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


# ------------------------------------------------------------------------------ image files
#: Why an image cannot be used, in the order they are reported (see :func:`inspect_image`).
IMAGE_PROBLEMS = OrderedDict(
    [
        ("unreadable", "cannot be read"),
        ("not_image", "not an image"),
        ("truncated", "truncated or corrupt"),
        ("size", "with a size that differs from the json's"),
    ]
)
_CACHE_VERSION = 1
_EXIF_ORIENTATION = 274
_TRANSPOSING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC
_JPEG_END = b"\xff\xd9"  # the EOI marker
_PNG_TAIL = 1 << 16  # bytes searched for an eXIf chunk after the pixel data


def _tail(f, size: int) -> bytes:
    f.seek(0, os.SEEK_END)
    length = f.tell()
    f.seek(max(0, length - size))
    return f.read()


def _orientation(img, tail: bytes) -> Optional[int]:
    """The EXIF orientation that detectron2's ``read_image`` applies, without decoding pixels
    where possible: a PNG's ``getexif`` decodes the image when the eXIf chunk is not before the
    pixel data, so it is called only when one is there or in the last bytes of the file."""
    if img.format == "PNG" and "exif" not in img.info and b"eXIf" not in tail:
        return None
    try:
        return img.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # detectron2 ignores an unreadable EXIF block as well
        return None


def inspect_image(path: str) -> Dict[str, Any]:
    """What the training reader (detectron2's ``read_image``) will find in an image file, cheaply.

    Returns ``{"problem": None or a key of IMAGE_PROBLEMS, "size": [width, height] (after the EXIF
    orientation, as detectron2's ``check_image_size`` compares it) or None, "format": PIL's
    format, "detail": the error}``. The header gives the format and the size without decoding
    the pixels; a PNG that ends with its IEND chunk or a JPEG that ends with its EOI marker is
    taken as complete, any other file (another format, or trailing bytes after the end marker) is
    decoded to be sure (``truncated`` when decoding fails, with PIL's message)."""
    result: Dict[str, Any] = {"problem": None, "size": None, "format": None, "detail": ""}
    try:
        with open(path, "rb") as f:
            try:
                img = Image.open(f)
            except UnidentifiedImageError:
                empty = os.fstat(f.fileno()).st_size == 0
                return dict(result, problem="not_image", detail="empty file" if empty else "")
            except Exception as e:  # a header that a PIL plugin cannot parse
                return dict(result, problem="not_image", detail=f"{type(e).__name__}: {e}")
            with img:
                result["format"] = img.format
                width, height = img.size
                tail = _tail(f, _PNG_TAIL if img.format == "PNG" else 64)
                end = {"PNG": _PNG_END, "JPEG": _JPEG_END, "MPO": _JPEG_END}.get(img.format)
                if end is None or not tail.endswith(end):
                    try:
                        img.load()
                    except Exception as e:
                        return dict(result, problem="truncated", detail=f"{type(e).__name__}: {e}")
                if _orientation(img, tail) in _TRANSPOSING:
                    width, height = height, width
                result["size"] = [int(width), int(height)]
    except OSError as e:  # open / read of the file itself (permissions, I/O error)
        return dict(result, problem="unreadable", detail=f"{type(e).__name__}: {e}")
    return result


def image_check_cache_dir() -> str:
    """The folder of the image-check caches: ``$DENSE_ASSIGN_CACHE_DIR/image_checks``, else
    ``$XDG_CACHE_HOME/dense_assign/image_checks`` (default ``~/.cache/dense_assign/...``)."""
    base = os.environ.get("DENSE_ASSIGN_CACHE_DIR", "")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME", "") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        base = os.path.join(xdg, "dense_assign")
    return os.path.join(base, "image_checks")


def _cache_path(cache_dir: str, key: str, readable: str, digest: int) -> str:
    """``<cache_dir>/<readable, as a file name>-<first digest hex digits of sha1(key)>.json``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", readable)[:80] or "cache"
    return os.path.join(cache_dir, f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:digest]}.json")


def _cache_file(cache_dir: str, dataset_names: Sequence[str]) -> str:
    names = ",".join(dataset_names)
    return _cache_path(cache_dir, names, names, 8)


def _file_key(stat: os.stat_result) -> list:
    """What identifies a version of a file for the caches: size, mtime and ctime (a rewrite that
    keeps the size and restores the mtime still changes the ctime)."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _write_cache(path: str, data: Dict[str, Any]) -> None:
    """Write a cache json atomically (:func:`dense_assign.fileio.atomic_write`); a cache that
    cannot be written only costs the cache."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: json.dump(data, f), mode="w")
    except (OSError, TypeError, ValueError) as e:
        logger.debug(f"Cache {path} not written: {type(e).__name__}: {e}")


def _cache_header() -> Dict[str, Any]:
    # Entries of another check version or PIL, or another LOAD_TRUNCATED_IMAGES, are not reused.
    return {
        "version": _CACHE_VERSION,
        "pil": Image.__version__ if hasattr(Image, "__version__") else "",
        "load_truncated_images": bool(ImageFile.LOAD_TRUNCATED_IMAGES),
    }


class _ImageCheckCache:
    """``{absolute path: [size, mtime_ns, ctime_ns, result]}`` in one json file per dataset
    (list). An entry is used only when the file's size, mtime and ctime are the same as when it
    was checked; the file keeps only the entries of the last check; it is written atomically
    (temporary file + rename). Unusable cache folders or files only cost the cache."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.entries: Dict[str, list] = {}
        self.used: Dict[str, list] = {}
        self.hits = 0
        self.dirty = False
        if not path or not os.path.isfile(path):
            return
        try:
            with open(path) as f:
                data = json.load(f)
            if data.get("header") == _cache_header() and isinstance(data.get("entries"), dict):
                self.entries = data["entries"]
        except Exception as e:
            logger.debug(f"Image check cache {path} not used: {type(e).__name__}: {e}")

    def get(self, path: str, stat: os.stat_result) -> Optional[Dict[str, Any]]:
        entry = self.entries.get(path)
        if entry is not None and entry[:3] == _file_key(stat):
            self.hits += 1
            self.used[path] = entry
            return entry[3]
        return None

    def put(self, path: str, stat: os.stat_result, result: Dict[str, Any]) -> None:
        if result["problem"] == "unreadable":
            return  # often transient (permissions, network file systems): checked again
        self.used[path] = _file_key(stat) + [result]
        self.dirty = True

    def save(self) -> None:
        if not self.path or not (self.dirty or len(self.used) != len(self.entries)):
            return
        _write_cache(self.path, {"header": _cache_header(), "entries": self.used})


def _image_problem(record: Dict[str, Any], result: Dict[str, Any]) -> Tuple[Optional[str], str]:
    """(key of IMAGE_PROBLEMS or None, what to show after the file name)."""
    if result["problem"] is not None:
        return result["problem"], result["detail"]
    width, height = record.get("width", None), record.get("height", None)
    if width is None and height is None or result["size"] is None:
        return None, ""  # no size in the json: detectron2 takes the image's
    got = tuple(result["size"])
    if got != (width, height):
        return "size", f"{got[0]}x{got[1]}, json {width}x{height}"
    return None, ""


def _image_report(
    names: Sequence[str],
    num_images: int,
    bad: Dict[str, List[Tuple[str, str]]],
    root: str,
) -> str:
    """``Dataset 'x' (images in ROOT): 3 of 2000 images cannot be used: 1 truncated or corrupt
    (a.png), ...``: the count per problem and the first files (relative to ROOT)."""
    if len(names) == 1:
        where = f"Dataset '{names[0]}'"
    else:
        where = f"Datasets {list(names)}" if names else "The dataset"
    total = sum(len(v) for v in bad.values())
    parts = []
    for key, label in IMAGE_PROBLEMS.items():
        items = bad.get(key, [])
        if not items:
            continue
        shown = []
        for file_name, detail in items[:_MAX_EXAMPLES]:
            rel = os.path.relpath(file_name, root) if root else file_name
            shown.append(f"{rel}: {detail}" if detail else rel)
        more = ", ..." if len(items) > _MAX_EXAMPLES else ""
        parts.append(f"{len(items)} {label} (" + "; ".join(shown) + more + ")")
    return (
        f"{where} (images in {root or '.'}): {total} of {num_images} images cannot be used: "
        + ", ".join(parts)
    )


def check_dataset_dicts(
    dataset_dicts: List[Dict[str, Any]],
    dataset_names: Sequence[str] = (),
    num_classes: Optional[int] = None,
    filter_empty: bool = True,
    drop_bad_boxes: bool = True,
    check_files: bool = True,
    check_images: bool = True,
    drop_bad_images: Optional[bool] = None,
    cache_dir: Optional[str] = None,
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
        check_images: (with ``check_files``) check each image file with :func:`inspect_image`:
            readable, an image, complete, and of the json's width and height.
        drop_bad_images: drop the images that cannot be used (one warning with the count per
            problem and the first files); False: raise :class:`DatasetError` with that message.
            None: as ``drop_bad_boxes`` (dropped from a training set, an error for a test set).
        cache_dir: folder of the image-check cache (one json file per dataset list);
            None: :func:`image_check_cache_dir`; "": no cache.

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
    if drop_bad_images is None:
        drop_bad_images = drop_bad_boxes
    check_images = check_images and check_files
    bad_images: Dict[str, List[Tuple[str, str]]] = {key: [] for key in IMAGE_PROBLEMS}
    num_checked = 0
    image_dirs: Dict[str, None] = {}
    cache = None
    if check_images:
        started = time.perf_counter()
        if cache_dir is None:
            cache_dir = image_check_cache_dir()
        cache = _ImageCheckCache(
            _cache_file(cache_dir, dataset_names) if cache_dir and dataset_names else None
        )

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
            elif check_images:
                num_checked += 1
                path = os.path.abspath(file_name)
                image_dirs.setdefault(os.path.dirname(path), None)
                stat = os.stat(path)
                inspected = cache.get(path, stat)
                if inspected is None:
                    inspected = inspect_image(path)
                    cache.put(path, stat, inspected)
                problem, detail = _image_problem(record, inspected)
                if problem is not None:
                    bad_images[problem].append((str(file_name), detail))
                    if drop_bad_images:
                        changed = True
                        continue

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

    if check_images:
        cache.save()
        logger.info(
            f"Image check of {where}: {num_checked} files in "
            f"{time.perf_counter() - started:.2f} s ({cache.hits} from the cache"
            + (f" {cache.path}" if cache.path else "")
            + ")"
        )
    if num_bad_category:
        raise DatasetError(
            f"{num_bad_category} annotation(s) of {where} have a category id outside "
            f"[0, {num_classes}) (the classes of the dataset and of the model, model.num_classes), "
            "e.g.: "
            + "; ".join(bad_category)
            + ". Fix the annotation file, or register the dataset with the right classes (and "
            "set model.num_classes to their count)."
        )
    if no_file:
        raise DatasetError(f"Images of {where} have no 'file_name': " + ", ".join(no_file))
    if num_missing:
        raise DatasetError(
            f"{num_missing} image file(s) of {where} do not exist, e.g.: "
            + ", ".join(missing_files)
            + " (check $DETECTRON2_DATASETS and the image root of the dataset)"
        )

    num_bad_images = sum(len(v) for v in bad_images.values())
    if num_bad_images:
        root = os.path.commonpath(list(image_dirs)) if image_dirs else ""
        report = _image_report(list(dataset_names), num_checked, bad_images, root)
        if not drop_bad_images:
            raise DatasetError(
                f"{report}. Replace the files, or remove the images from the annotation file "
                "(a test set is evaluated on all of its images)."
            )
        logger.warning(f"{report}. Dropped: training goes on without them.")

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
    if total_bad == 0 and not emptied and not num_bad_images:
        logger.info(
            f"Dataset check of {where}: {len(result)} images, {num_boxes} boxes, all usable"
        )
    return result if (changed or emptied) else dataset_dicts


# ------------------------------------------------------------------------------ COCO json files
_JSON_CHECK_VERSION = 1
#: {absolute path: ([size, mtime_ns, ctime_ns], summary)}: json files summarized in this process.
_JSON_SUMMARIES: Dict[str, Tuple[list, Dict[str, Any]]] = {}


def json_check_cache_dir() -> str:
    """The folder of the COCO json summaries: ``json_checks`` beside :func:`image_check_cache_dir`
    (``$DENSE_ASSIGN_CACHE_DIR/json_checks``, default ``~/.cache/dense_assign/json_checks``)."""
    return os.path.join(os.path.dirname(image_check_cache_dir()), "json_checks")


def _hashable(value):
    try:
        hash(value)
        return value
    except TypeError:  # a list or a dict where an id belongs: compared by its text
        return repr(value)


def _sorted_ids(ids) -> list:
    try:
        return sorted(ids)
    except TypeError:  # ids of mixed types
        return sorted(ids, key=repr)


def _summarize_coco(coco: Dict[str, Any]) -> Dict[str, Any]:
    """What the checks need from a COCO json: its categories as ``load_coco_json`` maps them
    (sorted ids -> class ids 0..K-1), the class ids the annotations use, duplicate image ids and
    annotations of missing images (the first few and the counts)."""
    images = coco.get("images") or []
    annotations = coco.get("annotations") or []
    files: Dict[Any, str] = {}
    duplicates: Dict[Any, List[str]] = OrderedDict()
    for image in images:
        if not isinstance(image, dict):
            continue
        key = _hashable(image.get("id"))
        name = str(image.get("file_name", "?"))
        if key in files:
            duplicates.setdefault(key, [files[key]]).append(name)
        else:
            files[key] = name
    names: Dict[Any, str] = {}
    for category in coco.get("categories") or []:
        if isinstance(category, dict) and "id" in category:
            names.setdefault(_hashable(category["id"]), str(category.get("name", "?")))
    category_ids = _sorted_ids(names)
    orphans: Dict[Any, int] = OrderedDict()
    used = set()
    for anno in annotations:
        if not isinstance(anno, dict):
            continue
        key = _hashable(anno.get("image_id"))
        if key not in files:
            orphans[key] = orphans.get(key, 0) + 1
        else:
            used.add(_hashable(anno.get("category_id")))
    class_of = {c: i for i, c in enumerate(category_ids)}
    return {
        "num_images": len(images),
        "num_annotations": len(annotations),
        "category_ids": category_ids,
        "class_names": [names[c] for c in category_ids],
        "class_ids_used": sorted(class_of[c] for c in used if c in class_of),
        "duplicate_image_ids": [[k, v] for k, v in list(duplicates.items())[:_MAX_ERRORS_LISTED]],
        "num_duplicate_image_ids": len(duplicates),
        "num_duplicate_images": sum(len(v) - 1 for v in duplicates.values()),
        "orphan_image_ids": [[k, n] for k, n in list(orphans.items())[:_MAX_ERRORS_LISTED]],
        "num_orphan_image_ids": len(orphans),
        "num_orphan_annotations": sum(orphans.values()),
    }


def _json_cache_file(cache_dir: str, path: str) -> str:
    return _cache_path(cache_dir, path, os.path.basename(path)[:60], 12)


def coco_json_summary(json_file: str, cache_dir: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The summary of a COCO json (:func:`_summarize_coco`) from one ``json.load``, cached per
    file (absolute path, size, mtime, ctime) in memory and in a small json under ``cache_dir``
    (None: :func:`json_check_cache_dir`; "": no file cache). None when the file does not exist
    or is not a json object: the loader reports that, naming the file."""
    path = os.path.abspath(str(json_file))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = _file_key(stat)
    memo = _JSON_SUMMARIES.get(path)
    if memo is not None and memo[0] == key:
        return memo[1]
    if cache_dir is None:
        cache_dir = json_check_cache_dir()
    cache_file = _json_cache_file(cache_dir, path) if cache_dir else None
    header = {"version": _JSON_CHECK_VERSION, "path": path, "key": key}
    if cache_file and os.path.isfile(cache_file):
        try:
            with open(cache_file) as f:
                cached = json.load(f)
            if cached.get("header") == header and isinstance(cached.get("summary"), dict):
                _JSON_SUMMARIES[path] = (key, cached["summary"])
                return cached["summary"]
        except Exception as e:
            logger.debug(f"Json check cache {cache_file} not used: {type(e).__name__}: {e}")
    started = time.perf_counter()
    try:
        with open(path) as f:
            coco = json.load(f)
    except Exception:  # not json, unreadable: the loader names the file and the error
        return None
    if not isinstance(coco, dict):
        return None
    summary = _summarize_coco(coco)
    del coco
    logger.info(
        f"COCO json check of {path}: {summary['num_images']} images, "
        f"{summary['num_annotations']} annotations in {time.perf_counter() - started:.2f} s"
    )
    _JSON_SUMMARIES[path] = (key, summary)
    if cache_file:
        _write_cache(cache_file, {"header": header, "summary": summary})
    return summary


def _listed(items: List[str], total: int) -> str:
    return ", ".join(items) + (f", ... ({total} in all)" if total > len(items) else "")


def check_coco_json(
    json_file: str, dataset_name: str = "", cache_dir: Optional[str] = None
) -> Optional[Dict[str, Any]]:
    """Check a COCO json for what detectron2 would drop silently (see the module docstring):
    duplicate image ids and annotations whose image id is not in ``images`` raise a
    :class:`DatasetError` naming the dataset, the json and the ids (the first few and the
    counts). Returns :func:`coco_json_summary` (None for a file that is missing or not json)."""
    summary = coco_json_summary(json_file, cache_dir)
    if summary is None:
        return None
    problems = []
    if summary["num_duplicate_image_ids"]:
        n = summary["num_duplicate_image_ids"]
        shown = [
            f"id {image_id!r} ({', '.join(names[:_MAX_EXAMPLES])}"
            + (", ..." if len(names) > _MAX_EXAMPLES else "")
            + ")"
            for image_id, names in summary["duplicate_image_ids"]
        ]
        problems.append(
            f"{n} image id(s) appear more than once in 'images' "
            f"({summary['num_duplicate_images']} extra image entries): " + _listed(shown, n)
        )
    if summary["num_orphan_annotations"]:
        n = summary["num_orphan_image_ids"]
        shown = [
            f"{image_id!r} ({count} annotation{'s' if count > 1 else ''})"
            for image_id, count in summary["orphan_image_ids"]
        ]
        problems.append(
            f"{summary['num_orphan_annotations']} annotation(s) have an image_id that is not in "
            f"'images' ({n} image id(s)): " + _listed(shown, n)
        )
    if not problems:
        return summary
    where = f"Dataset '{dataset_name}' (json_file={json_file})" if dataset_name else json_file
    raise DatasetError(
        f"{where}: " + "; ".join(problems) + ". detectron2 would keep one image per id (with "
        "the annotations of all of them) and drop the annotations of missing images with only a "
        "warning: training and evaluation would use the wrong ground truth. Give every image a "
        "unique id and every annotation the id of an image of the json."
    )


def dataset_classes(name: str) -> Dict[str, Any]:
    """The classes of registered dataset ``name`` as its loaders will see them, for the check of
    ``model.num_classes`` before the model is built. Returns ``{"classes": class names or None,
    "class_ids": the class ids its annotations use (sorted) or None, "json_file": metadata's
    json_file or None, "source": where the classes come from}``:

    * a ``json_file`` in the metadata (``register_coco_instances``, detectron2's builtin COCO
      sets): the json is checked (:func:`check_coco_json`: duplicate image ids and annotations of
      missing images are a :class:`DatasetError`) and gives the class ids used, mapped as
      ``load_coco_json`` maps them (sorted category ids -> 0..K-1); the classes are the
      metadata's ``thing_classes`` when it has them, else the json's ``categories`` (which
      ``load_coco_json`` sets as ``thing_classes`` only when it loads the file);
    * else ``thing_classes`` of the metadata (class ids left to the loaders' check);
    * else the dataset dicts, loaded with ``DatasetCatalog.get`` as the loaders do (this may set
      ``thing_classes``), and the ``category_id`` values of their annotations. An error while
      loading is left to the loaders, which report it naming the dataset.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes", None)
    json_file = meta.get("json_file", None)
    info: Dict[str, Any] = {
        "classes": list(classes) if classes is not None else None,
        "class_ids": None,
        "json_file": json_file,
        "source": "thing_classes" if classes is not None else None,
    }
    if json_file:
        summary = check_coco_json(json_file, name)
        if summary is not None:
            json_classes = summary["class_names"]
            if classes is None and json_classes:
                info.update(classes=json_classes, source="categories")
            if info["classes"] is not None and len(info["classes"]) == len(json_classes):
                info["class_ids"] = summary["class_ids_used"]
        return info
    if classes is not None:
        return info
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:  # reported by the loaders, naming the dataset
        logger.debug(f"Dataset {name!r} not loaded for the class check: {type(e).__name__}: {e}")
        return info
    classes = meta.get("thing_classes", None)
    if classes is not None:
        info.update(classes=list(classes), source="thing_classes")
    used = set()
    for record in dicts if isinstance(dicts, list) else []:
        for anno in record.get("annotations", None) or []:
            cat = anno.get("category_id", None) if isinstance(anno, dict) else None
            if isinstance(cat, numbers.Integral) and not isinstance(cat, bool):
                used.add(int(cat))
    info["class_ids"] = sorted(used)
    info["source"] = info["source"] or "dicts"
    return info


class CheckedMapper:
    """Wraps a dataset mapper: an error while reading or mapping an image is raised again as
    :class:`ImageLoadError` naming the file and the image id (the original error is chained, and
    its type and message are in the new message, so that they survive a data-loader worker)."""

    def __init__(self, mapper: Callable[[Dict[str, Any]], Any]):
        self.mapper = mapper
        _shorten_training_loop_errors()

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

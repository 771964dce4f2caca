"""The synthetic dataset on disk: where its files go (:class:`SyntheticPaths`), the stamp, the COCO
json and Pascal VOC xml, the images (rendered by forked workers) and the atomic install of a
finished dataset (:func:`generate_synthetic_dataset`).

Layout of a generated dataset ``<root>/<name>/``::

    images/<id>.png                       all images of both splits (ids are unique across splits)
    annotations/instances_{train,val}.json    COCO json (``file_name`` relative to ``images/``)
    VOC/Annotations/<id>.xml              Pascal VOC xml, both splits
    VOC/ImageSets/Main/{train,val,trainval}.txt
    VOC/JPEGImages/<id>.jpg -> ../../images/<id>.png   (relative symlinks, see below)
    synthetic_params.json                 the stamp: generator version + all generator parameters

Decisions
---------
* **VOC boxes** are written as integers ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2 + 1,
  ymax = y2 + 1`` (1-based inclusive pixel indices, the VOC convention). detectron2's
  ``load_voc_instances`` subtracts 1 from xmin/ymin, which yields exactly the COCO box in XYXY form
  ``[x1, y1, x1 + w, y1 + h]``; the VOC evaluator parses them with ``int()``.
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
* **Determinism**: JSON and XML contain no timestamps or paths, so the same parameters give
  byte-identical annotation files; the pixels are deterministic too (see :mod:`.rendering`) and do
  not depend on the number of workers.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from .params import _SPLITS, GENERATOR_VERSION, SyntheticParams, _as_params
from .rendering import _generate

logger = logging.getLogger(__name__)

_STAMP_FILE = "synthetic_params.json"


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

"""Data loaders of ``train_net.py``: checked datasets and a training stream that resumes exactly.

**Checked datasets.** The loaders are built from the config's ``dataloader.train`` /
``dataloader.test`` nodes, but the dataset is loaded here first: an error while loading it (an
annotation file that is not valid JSON, a dataset that is not registered) becomes a
:class:`~dense_assign.data.DatasetError` naming the dataset and its file, and the dataset dicts go
through :func:`~dense_assign.data.check_dataset_dicts` (bad boxes dropped and counted, category
ids outside the classes refused, missing image files refused), and the mapper is wrapped in
:class:`~dense_assign.data.CheckedMapper` (an unreadable image names its file).

**Deterministic training stream.** When ``dataloader.train`` is detectron2's
``build_detection_train_loader`` without a custom sampler (every config of this project),
:class:`DeterministicTrainLoader` replaces it. Its batches are a function of a seed and the
iteration only:

* position ``p`` of the sample stream is image ``perm_e[p mod N]``, ``perm_e`` a permutation of
  the N images drawn from ``(seed, epoch e)``;
* with aspect-ratio grouping (detectron2's default: images wider than tall and the others in two
  buckets, a batch when a bucket is full), global batch ``k`` is the k-th full bucket of that
  stream of ``total_batch_size``; without it, positions ``[k B, (k + 1) B)``;
* process ``r`` of ``W`` takes the r-th slice of each global batch;
* the random augmentations of position ``p`` run with numpy / python / torch generators seeded
  from ``(seed, p)``, whichever process or data-loader worker maps it.

Hence ``--resume`` at iteration ``s`` continues with exactly the batches an uninterrupted run sees
(the start is found by replaying the bucket assignment from the images' sizes, no image is read),
W processes see the same images with the same augmentations as one process with the same total
batch, and the number of data-loader workers does not change the data. The seed is
``train.seed`` (or, when it is negative, a random seed shared by the processes); it is saved in
the checkpoints (``train_data``) and restored by ``--resume``.

``train.deterministic_data=False`` (or a config whose train loader is not
``build_detection_train_loader``, or that sets a ``sampler``) uses detectron2's loader as
configured, with the checked dataset and mapper, but without these guarantees.
"""

import contextlib
import json
import logging
import os
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.config import instantiate
from detectron2.data import (
    DatasetCatalog,
    DatasetFromList,
    MetadataCatalog,
    build_detection_train_loader,
)
from detectron2.utils import comm
from detectron2.utils.registry import locate
from omegaconf import DictConfig

from ..data.checks import CheckedMapper, DatasetError, check_dataset_dicts
from .config import ConfigError, cfg_get, cfg_option, dataset_names

__all__ = [
    "DeterministicTrainLoader",
    "build_train_loader",
    "build_test_loader",
    "check_test_dataset",
    "check_evaluable",
    "load_dataset",
    "dataset_num_classes",
    "data_seed",
]

logger = logging.getLogger(__name__)

#: ``dataloader.train`` keys that :class:`DeterministicTrainLoader` understands; another key
#: (or a ``sampler`` / ``collate_fn`` that is not None) keeps detectron2's loader.
_STREAM_KEYS = {
    "dataset",
    "mapper",
    "total_batch_size",
    "aspect_ratio_grouping",
    "num_workers",
    "sampler",
    "collate_fn",
}
_TORCH_LOADER_KEYS = {"prefetch_factor", "persistent_workers", "pin_memory"}
_MAX_SUBSTITUTES = 10


# ------------------------------------------------------------------------------ datasets
def _names(dataset_node) -> List[str]:
    return dataset_names(dataset_node, "names") if isinstance(dataset_node, DictConfig) else []


def _source(name: str) -> str:
    meta = MetadataCatalog.get(name)
    for key in ("json_file", "dirname", "image_root"):
        value = meta.get(key, None)
        if value:
            return f"{key}={value}"
    return "no file in its metadata"


def dataset_num_classes(names) -> Optional[int]:
    """The number of classes of the first dataset (``thing_classes`` of its metadata), or None
    when its metadata does not have them."""
    for name in names[:1]:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None:
            return len(classes)
    return None


def _unknown_category_annotations(json_file: str, limit: int = 5) -> str:
    """The first annotations of a COCO json whose category id is not among its categories."""
    try:
        with open(json_file) as f:
            coco = json.load(f)
        known = {c["id"] for c in coco.get("categories", [])}
        files = {im["id"]: im.get("file_name", "?") for im in coco.get("images", [])}
        bad = [a for a in coco.get("annotations", []) if a.get("category_id") not in known]
    except Exception:  # only an explanation: never hide the original error
        return ""
    shown = [
        f"annotation id={a.get('id', '?')} of image {files.get(a.get('image_id'), '?')} "
        f"(image_id={a.get('image_id', '?')}): category_id={a.get('category_id')!r}"
        for a in bad[:limit]
    ]
    return (
        f" {len(bad)} annotation(s) have a category id not in 'categories' "
        f"(ids {sorted(known)}), e.g.: " + "; ".join(shown)
        if bad
        else ""
    )


def load_dataset(loader_node, role: str):
    """Instantiate ``loader_node.dataset``; an error while loading becomes a
    :class:`DatasetError` naming the dataset(s) and their files (for a COCO json whose
    annotations use unknown category ids, also the annotations and images)."""
    node = loader_node.dataset
    names = _names(node)
    try:
        return instantiate(node)
    except DatasetError:
        raise
    except Exception as e:
        sources = "; ".join(f"{n}: {_source(n)}" for n in names) or "no dataset names"
        detail = ""
        if "category_id" in str(e):
            # detectron2 says "invalid category_id" without the image: find it
            for name in names:
                json_file = MetadataCatalog.get(name).get("json_file", None)
                if isinstance(e, KeyError) and json_file and os.path.isfile(json_file):
                    detail += _unknown_category_annotations(json_file)
                elif dataset_num_classes([name]) is not None:
                    check_dataset_dicts(
                        DatasetCatalog.get(name),
                        [name],
                        dataset_num_classes([name]),
                        filter_empty=False,
                        drop_bad_boxes=False,
                        check_files=False,
                    )  # raises a DatasetError naming the annotations
        raise DatasetError(
            f"Cannot load the {role} dataset {names or node} ({sources}): "
            f"{type(e).__name__}: {e}.{detail}"
        ) from e


def _checked_dataset(loader_node, role: str, num_classes: Optional[int], training: bool):
    dataset = load_dataset(loader_node, role)
    if not isinstance(dataset, list):  # a torch Dataset: nothing to check here
        return dataset
    names = _names(loader_node.dataset)
    # ids must fit both the dataset's classes and the model's (model.num_classes)
    known = [n for n in (dataset_num_classes(names), num_classes) if n is not None]
    return check_dataset_dicts(
        dataset,
        names,
        num_classes=min(known) if known else None,
        filter_empty=training and bool(cfg_get(loader_node, "dataset.filter_empty", True)),
        drop_bad_boxes=training,
    )


def _target(node):
    target = node.get("_target_", None) if isinstance(node, DictConfig) else None
    return locate(target) if isinstance(target, str) else target


def _call_with(node, dataset):
    """Call the loader function of ``node`` with ``dataset`` and the checked mapper."""
    kwargs = {k: instantiate(node[k]) for k in node.keys() if k not in ("_target_", "dataset")}
    if kwargs.get("mapper", None) is not None:
        kwargs["mapper"] = CheckedMapper(kwargs["mapper"])
    return _target(node)(dataset=dataset, **kwargs)


def _has_evaluator(cfg) -> bool:
    return cfg_get(cfg, "dataloader.evaluator", None) is not None


def _json_annotations_note(name: str) -> str:
    """Why a COCO json of dataset ``name`` gave no annotations (only read when it gave none)."""
    json_file = MetadataCatalog.get(name).get("json_file", None)
    if not json_file or not os.path.isfile(json_file):
        return ""
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except Exception:  # only an explanation
        return ""
    if not isinstance(coco, dict):
        return ""
    if "annotations" not in coco:
        return f" ({json_file} has no 'annotations' key)"
    if not coco["annotations"]:
        return f" ({json_file} has an empty 'annotations' list)"
    return ""


def check_evaluable(dataset, names: List[str]) -> None:
    """The evaluators of ``train_net.py`` (detectron2's COCO, LVIS, Pascal VOC evaluators) compare
    the detections with the ground-truth boxes of the test set: a test set without any
    annotation with a box cannot be evaluated (detectron2's ``COCOEvaluator`` then only logs
    "Annotations are not available for evaluation" and returns no results). Raises a
    :class:`DatasetError` naming the dataset and what is missing; a test set where some images
    have no annotation is fine."""
    if not isinstance(dataset, list):  # a torch Dataset: nothing to check here
        return
    annotations = boxes = 0
    for record in dataset:
        annos = record.get("annotations", None) or []
        annotations += len(annos)
        boxes += sum(1 for a in annos if isinstance(a, dict) and a.get("bbox", None) is not None)
    if boxes:
        return
    sources = "; ".join(f"{n}: {_source(n)}" for n in names) or "no dataset names"
    if annotations:
        what = f"{annotations} annotation(s), none with a box ('bbox')"
    else:
        what = "no annotations" + "".join(_json_annotations_note(n) for n in names)
    raise DatasetError(
        f"The test dataset {names} ({sources}) cannot be evaluated: {what} in its "
        f"{len(dataset)} image(s); the evaluator (dataloader.evaluator) needs ground-truth "
        "boxes. Use a test set with annotations, or train without evaluation: "
        "dataloader.evaluator=null"
    )


def check_test_dataset(cfg, num_classes: Optional[int] = None) -> None:
    """Load and check the test dataset (before training, so that a bad annotation file does not
    fail only at the final evaluation). Bad boxes are counted, not dropped. When the config has
    an evaluator (``dataloader.evaluator``; training evaluates after the last iteration, and every
    ``train.eval_period`` iterations), the test set must have ground-truth boxes
    (:func:`check_evaluable`); without one (``dataloader.evaluator=null``) the test set is not
    needed, and only checked when ``train.vis_predictions`` draws from it."""
    node = cfg_get(cfg, "dataloader.test", None)
    if node is None or cfg_get(node, "dataset", None) is None:
        return
    evaluation = _has_evaluator(cfg)
    if not evaluation and not int(cfg_option(cfg, "train.vis_predictions") or 0):
        logger.info(
            "No dataloader.evaluator: the test set is not loaded, training runs without evaluation"
        )
        return
    dataset = _checked_dataset(node, "test", num_classes, training=False)
    if evaluation:
        check_evaluable(dataset, _names(node.dataset))


def build_test_loader(cfg, num_classes: Optional[int] = None, evaluation: bool = False):
    """``cfg.dataloader.test`` with the checked dataset and mapper (as configured otherwise).
    With ``evaluation``, the test set must have ground-truth boxes (:func:`check_evaluable`)."""
    node = cfg.dataloader.test
    if cfg_get(node, "dataset", None) is None or _target(node) is None:
        return instantiate(node)
    dataset = _checked_dataset(node, "test", num_classes, training=False)
    if evaluation:
        check_evaluable(dataset, _names(node.dataset))
    return _call_with(node, dataset)


# ------------------------------------------------------------------------------ train stream
def data_seed(cfg) -> int:
    """``train.seed`` when >= 0, else a random seed shared by all processes (every process must
    call this)."""
    seed = int(cfg_option(cfg, "train.seed"))
    return seed if seed >= 0 else int(comm.shared_random_seed())


@contextlib.contextmanager
def _seeded(seed: int):
    """numpy, python and torch (CPU) global generators seeded with ``seed``; restored after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _keep_batch(batch):
    return batch


class DeterministicTrainLoader:
    """An infinite iterable of per-process training batches (lists of mapped dicts), a function
    of ``seed`` and the iteration (see the module docstring). Set :attr:`start_iter` before the
    first batch is drawn; :meth:`state_dict` / :meth:`load_state_dict` carry the seed through
    checkpoints."""

    def __init__(
        self,
        dataset_dicts: List[Dict[str, Any]],
        mapper,
        total_batch_size: int,
        *,
        seed: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        shuffle: bool = True,
        **loader_kwargs,
    ):
        world = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world:
            raise ConfigError(
                f"dataloader.train.total_batch_size={total_batch_size} must be a positive multiple "
                f"of the number of processes ({world})"
            )
        if not dataset_dicts:
            raise DatasetError("The training dataset is empty")
        self.size = len(dataset_dicts)
        self.total_batch_size = int(total_batch_size)
        self.batch_size = self.total_batch_size // world
        self.rank = comm.get_rank()
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_workers = int(num_workers)
        self.loader_kwargs = loader_kwargs
        self.mapper = mapper
        self.start_iter = 0
        self.groups: Optional[np.ndarray] = None
        if aspect_ratio_grouping:
            if all("width" in d and "height" in d for d in dataset_dicts):
                self.groups = np.array(
                    [0 if d["width"] > d["height"] else 1 for d in dataset_dicts], dtype=np.int8
                )
            else:
                logger.info("Some images have no width/height: no aspect-ratio grouping")
        # Serialized: workers share the memory instead of copying python objects on access.
        self.dataset = DatasetFromList(dataset_dicts, copy=False, serialize=True)

    # ------------------------------------------------------------ checkpoint state
    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        seed = int(state["seed"])
        if seed != self.seed:
            logger.info(f"Training data stream: seed {seed} from the checkpoint (was {self.seed})")
        self.seed = seed

    # ------------------------------------------------------------ the stream
    def positions(self, start_iter: int = 0) -> Iterator[List[Tuple[int, int]]]:
        """Global batches ``start_iter, start_iter + 1, ...`` as lists of (position, image
        index), all processes together."""
        perm_epoch, perm = -1, None
        B = self.total_batch_size

        def index_at(p):
            nonlocal perm_epoch, perm
            epoch, offset = divmod(p, self.size)
            if epoch != perm_epoch:
                perm_epoch = epoch
                perm = (
                    np.random.default_rng([self.seed, epoch]).permutation(self.size)
                    if self.shuffle
                    else np.arange(self.size)
                )
            return int(perm[offset])

        if self.groups is None:
            k = start_iter
            while True:
                yield [(p, index_at(p)) for p in range(k * B, (k + 1) * B)]
                k += 1
        buckets: Tuple[list, list] = ([], [])
        k, p = 0, 0
        while True:
            index = index_at(p)
            bucket = buckets[self.groups[index]]
            bucket.append((p, index))
            p += 1
            if len(bucket) == B:
                if k >= start_iter:
                    yield list(bucket)
                bucket.clear()
                k += 1

    def _sample_seed(self, position: int, attempt: int) -> int:
        entropy = [self.seed, position] + ([attempt] if attempt else [])
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def map_sample(self, position: int, index: int):
        """The model input of stream position ``position`` (image ``index``). A mapper that
        returns None (drops an image) gets a substitute image, chosen from the position."""
        for attempt in range(_MAX_SUBSTITUTES):
            with _seeded(self._sample_seed(position, attempt)):
                mapped = self.mapper(self.dataset[index])
            if mapped is not None:
                return mapped
            rng = np.random.default_rng([self.seed, position, attempt, 1])
            index = int(rng.integers(self.size))
        raise DatasetError(
            f"The mapper returned None {_MAX_SUBSTITUTES} times in a row (stream position "
            f"{position}): it drops too many images"
        )

    def batches(self, start_iter: int, worker: int = 0, num_workers: int = 1) -> Iterator[list]:
        """This process's batches from ``start_iter`` on; with ``num_workers`` > 1 only every
        ``num_workers``-th one, from the ``worker``-th."""
        lo = self.rank * self.batch_size
        for j, batch in enumerate(self.positions(start_iter)):
            if j % num_workers == worker:
                yield [self.map_sample(p, i) for p, i in batch[lo : lo + self.batch_size]]

    def __iter__(self):
        # A generator: nothing is read (and no worker started) before the first batch is drawn,
        # so that start_iter can be set after the trainer (which calls iter()) is built.
        start = self.start_iter
        if self.num_workers <= 0:
            yield from self.batches(start)
            return
        loader = torchdata.DataLoader(
            _WorkerStream(self, start),
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_keep_batch,
            **self.loader_kwargs,
        )
        # Workers take batches round-robin, and the DataLoader returns them in that order.
        yield from loader


class _WorkerStream(torchdata.IterableDataset):
    def __init__(self, loader: DeterministicTrainLoader, start_iter: int):
        self.loader = loader
        self.start_iter = start_iter

    def __iter__(self):
        info = torchdata.get_worker_info()
        worker, num = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.loader.batches(self.start_iter, worker, num)


def build_train_loader(cfg, num_classes: Optional[int] = None):
    """The training data loader of ``cfg.dataloader.train`` (see the module docstring):
    a :class:`DeterministicTrainLoader` when possible, else the configured loader with the
    checked dataset and mapper. Every process must call it."""
    node = cfg.dataloader.train
    target = _target(node)
    if cfg_get(node, "dataset", None) is None or target is None:
        logger.warning(
            "dataloader.train has no 'dataset' (or no _target_): using it as it is, without the "
            "dataset check and the deterministic stream"
        )
        return instantiate(node)
    dataset = _checked_dataset(node, "training", num_classes, training=True)

    wanted = bool(cfg_option(cfg, "train.deterministic_data"))
    keys = set(node.keys()) - {"_target_"}
    unsupported = sorted(
        k
        for k in keys
        if k not in _STREAM_KEYS | _TORCH_LOADER_KEYS
        or (k in ("sampler", "collate_fn") and node[k] is not None)
    )
    usable = target is build_detection_train_loader and isinstance(dataset, list)
    if not wanted or not usable or unsupported:
        if wanted:
            why = (
                f"its keys {unsupported} are not supported"
                if usable
                else "it is not build_detection_train_loader over a list of dataset dicts"
            )
            logger.warning(
                f"dataloader.train: detectron2's loader as configured ({why}); --resume and "
                "several processes then do not see the same data as one uninterrupted run"
            )
        return _call_with(node, dataset)

    mapper = instantiate(node.mapper)
    loader = DeterministicTrainLoader(
        dataset,
        CheckedMapper(mapper) if mapper is not None else _identity_mapper,
        int(node.total_batch_size),
        seed=data_seed(cfg),
        aspect_ratio_grouping=bool(cfg_get(node, "aspect_ratio_grouping", True)),
        num_workers=int(cfg_get(node, "num_workers", 0)),
        **{k: node[k] for k in _TORCH_LOADER_KEYS if k in node},
    )
    logger.info(
        f"Training data: {loader.size} images, deterministic stream (seed {loader.seed}), "
        f"{loader.batch_size} images per process per iteration"
    )
    return loader


def _identity_mapper(d):
    return d

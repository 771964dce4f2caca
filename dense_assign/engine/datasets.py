"""Making sure the datasets a config names exist before data loaders or evaluators are built."""

import logging
from typing import List

from detectron2.utils import comm

from .config import DATASET_NAME_KEYS, dataset_names

__all__ = ["SYNTHETIC_PREFIX", "dataset_names_from_cfg", "prepare_datasets"]

logger = logging.getLogger(__name__)

#: Dataset names with this prefix are the project's generated datasets (``dense_assign.data``).
SYNTHETIC_PREFIX = "synthetic_"


def dataset_names_from_cfg(cfg) -> List[str]:
    """The dataset names of ``dataloader.{train,test}.dataset.names`` (each a string or a list),
    in order and without repeats; keys that a config does not have are skipped."""
    names: List[str] = []
    for key in DATASET_NAME_KEYS:
        names += [n for n in dataset_names(cfg, key) if n not in names]
    return names


def prepare_datasets(cfg) -> List[str]:
    """Generate the built-in synthetic datasets the config uses (``synthetic_*`` names), if they
    are not on disk yet. Returns the names that were prepared.

    The first process of each machine (local rank 0) generates, the others wait at a barrier, so
    that processes never generate the same dataset concurrently; every process must call this.
    Local rather than global rank 0, so that machines without a shared disk each get their copy
    (concurrent generation on a shared disk is safe: ``dense_assign.data`` installs a dataset by
    an atomic rename). Must be called in every process before building data loaders/evaluators.
    """
    names = [n for n in dataset_names_from_cfg(cfg) if n.startswith(SYNTHETIC_PREFIX)]
    if names:
        import dense_assign.data as data

        if comm.get_local_rank() == 0:
            for name in names:
                paths = data.prepare_synthetic(name)
                where = getattr(paths, "dataset_dir", None)
                where = f" in {where}" if where else ""
                logger.info(f"Synthetic dataset {name} is ready{where}")
    comm.synchronize()
    return names

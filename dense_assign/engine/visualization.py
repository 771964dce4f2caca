"""Drawing a model's predictions on test images (``train.vis_predictions``)."""

import copy
import itertools
import logging
import os
from typing import Iterator, List, Optional

import torch
from PIL import Image
from torch.nn.parallel import DataParallel, DistributedDataParallel

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import Visualizer

from .config import cfg_get, dataset_names

__all__ = ["PREDICTIONS_DIR", "VIS_SCORE_THRESHOLD", "iter_test_inputs", "visualize_predictions"]

logger = logging.getLogger(__name__)

#: Sub-folder of ``train.output_dir`` that receives the images.
PREDICTIONS_DIR = "predictions"
#: Predictions with a score at or below this are not drawn.
VIS_SCORE_THRESHOLD = 0.3


def iter_test_inputs(cfg, num_images: int) -> Iterator[dict]:
    """The first ``num_images`` model inputs of the test set, as the test loader's mapper makes
    them. Applies ``cfg.dataloader.test.mapper`` to ``cfg.dataloader.test.dataset`` directly when
    the config has both (no sampler: the same images in every process count); otherwise it reads
    the test loader itself."""
    test = cfg.dataloader.test
    if cfg_get(test, "dataset", None) is not None and cfg_get(test, "mapper", None) is not None:
        dataset = instantiate(test.dataset)
        mapper = instantiate(test.mapper)
        for i in range(min(num_images, len(dataset))):
            item = mapper(copy.deepcopy(dataset[i]))
            if item is not None:
                yield item
        return
    inputs = (x for batch in instantiate(test) for x in batch)
    yield from itertools.islice(inputs, num_images)


def _metadata(cfg):
    test_names = dataset_names(cfg, "dataloader.test.dataset.names")
    if not test_names:
        return MetadataCatalog.get("__unused__"), None
    return MetadataCatalog.get(test_names[0]), test_names[0]


def visualize_predictions(
    cfg,
    model: torch.nn.Module,
    num_images: int,
    output_dir: Optional[str] = None,
    score_threshold: float = VIS_SCORE_THRESHOLD,
) -> List[str]:
    """Write ``num_images`` test images with the model's predictions (score > ``score_threshold``)
    drawn by detectron2's ``Visualizer`` as PNG into ``output_dir`` (default
    ``<train.output_dir>/predictions``). Class names come from the metadata of the first test
    dataset. Runs in the calling process only. Returns the written paths."""
    if num_images <= 0:
        return []
    if output_dir is None:
        output_dir = os.path.join(cfg.train.output_dir, PREDICTIONS_DIR)
    PathManager.mkdirs(output_dir)
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    metadata, dataset_name = _metadata(cfg)
    written: List[str] = []
    with inference_context(model), torch.no_grad():
        for index, inputs in enumerate(iter_test_inputs(cfg, num_images)):
            outputs = model([inputs])[0]
            if "instances" not in outputs:
                logger.warning("The model returns no 'instances': nothing to visualize")
                break
            instances = outputs["instances"].to("cpu")
            instances = instances[instances.scores > score_threshold]
            # Draw on the original image; the outputs are in its coordinates (height/width).
            image = read_image(inputs["file_name"], format="RGB")
            drawn = Visualizer(image, metadata=metadata).draw_instance_predictions(instances)
            stem = os.path.splitext(os.path.basename(inputs["file_name"]))[0]
            path = os.path.join(output_dir, f"{index:03d}_{stem}.png")
            with PathManager.open(path, "wb") as f:
                Image.fromarray(drawn.get_image()).save(f, format="PNG")
            written.append(path)
    logger.info(
        f"Wrote {len(written)} images with predictions (score > {score_threshold}) of "
        f"{dataset_name or 'the test set'} to {output_dir}"
    )
    return written

"""Drawing a model's predictions on test images (``train.vis_predictions``)."""

import copy
import itertools
import logging
import os
from typing import Iterator, List, Optional

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation.evaluator import inference_context
from detectron2.layers import batched_nms
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import Visualizer
from PIL import Image, ImageDraw
from torch.nn.parallel import DataParallel, DistributedDataParallel

from .config import cfg_get, dataset_names

__all__ = [
    "PREDICTIONS_DIR",
    "VIS_SCORE_THRESHOLD",
    "VIS_MIN_SIDE",
    "draw_gt_and_predictions",
    "iter_test_inputs",
    "visualize_predictions",
]

logger = logging.getLogger(__name__)

#: Sub-folder of ``train.output_dir`` that receives the images.
PREDICTIONS_DIR = "predictions"
#: Predictions with a score at or below this are not drawn.
VIS_SCORE_THRESHOLD = 0.3
#: Of the predictions that overlap by more than this IoU, whatever their class, only the highest
#: scoring one is drawn, and at most VIS_MAX_DETECTIONS an image, so the picture shows what the
#: detector found rather than its duplicates.
VIS_NMS_THRESHOLD = 0.5
VIS_MAX_DETECTIONS = 20


def _iter_raw_and_mapped(cfg, num_images: int):
    """(dataset dict or None, model input) for the first ``num_images`` test images."""
    test = cfg.dataloader.test
    if cfg_get(test, "dataset", None) is not None and cfg_get(test, "mapper", None) is not None:
        dataset = instantiate(test.dataset)
        mapper = instantiate(test.mapper)
        for i in range(min(num_images, len(dataset))):
            item = mapper(copy.deepcopy(dataset[i]))
            if item is not None:
                yield dataset[i], item
        return
    inputs = (x for batch in instantiate(test) for x in batch)
    for item in itertools.islice(inputs, num_images):
        yield None, item


def iter_test_inputs(cfg, num_images: int) -> Iterator[dict]:
    """The first ``num_images`` model inputs of the test set, as the test loader's mapper makes
    them. Applies ``cfg.dataloader.test.mapper`` to ``cfg.dataloader.test.dataset`` directly when
    the config has both (no sampler: the same images in every process count); otherwise it reads
    the test loader itself."""
    for _, item in _iter_raw_and_mapped(cfg, num_images):
        yield item


def _metadata(cfg):
    test_names = dataset_names(cfg, "dataloader.test.dataset.names")
    if not test_names:
        return MetadataCatalog.get("__unused__"), None
    return MetadataCatalog.get(test_names[0]), test_names[0]


#: Images are drawn at least this large (shorter side, px), so that labels stay readable on the
#: 128 px images of the converging benchmark.
VIS_MIN_SIDE = 384


def draw_gt_and_predictions(image, dataset_dict, instances, metadata) -> np.ndarray:
    """Two panels side by side, each scaled so that the shorter side is at least
    :data:`VIS_MIN_SIDE`: the ground truth of ``dataset_dict`` ("ground truth") and ``instances``
    ("predictions"); one panel when ``dataset_dict`` has no annotations."""
    scale = max(1.0, VIS_MIN_SIDE / min(image.shape[:2]))
    panels = []
    if dataset_dict is not None and dataset_dict.get("annotations"):
        gt = Visualizer(image, metadata=metadata, scale=scale)
        panels.append(_titled(gt.draw_dataset_dict(dataset_dict).get_image(), "ground truth"))
    pred = Visualizer(image, metadata=metadata, scale=scale)
    panels.append(_titled(pred.draw_instance_predictions(instances).get_image(), "predictions"))
    gap = np.full((panels[0].shape[0], 8, 3), 255, dtype=np.uint8)
    row = panels[:1]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, 1)


def _titled(panel, title: str):
    """``panel`` with a white strip on top holding ``title``."""
    strip = Image.new("RGB", (panel.shape[1], 18), "white")
    ImageDraw.Draw(strip).text((4, 3), title, fill="black")
    return np.concatenate([np.asarray(strip), panel], 0)


def visualize_predictions(
    cfg,
    model: torch.nn.Module,
    num_images: int,
    output_dir: Optional[str] = None,
    score_threshold: float = VIS_SCORE_THRESHOLD,
) -> List[str]:
    """Write ``num_images`` test images as PNG into ``output_dir`` (default
    ``<train.output_dir>/predictions``): the ground truth on the left (when the test set has
    annotations) and the model's predictions with a score above ``score_threshold`` on the right
    (after class-agnostic NMS at :data:`VIS_NMS_THRESHOLD`, at most :data:`VIS_MAX_DETECTIONS`),
    drawn by detectron2's ``Visualizer`` (:func:`draw_gt_and_predictions`). Class names come from
    the metadata of the first test dataset. Runs in the calling process only. Returns the written
    paths."""
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
        for index, (raw, inputs) in enumerate(_iter_raw_and_mapped(cfg, num_images)):
            outputs = model([inputs])[0]
            if "instances" not in outputs:
                logger.warning("The model returns no 'instances': nothing to visualize")
                break
            instances = outputs["instances"].to("cpu")
            instances = instances[instances.scores > score_threshold]
            # One box a place: class-agnostic NMS for the picture only (the evaluation keeps all).
            keep = batched_nms(
                instances.pred_boxes.tensor,
                instances.scores,
                torch.zeros_like(instances.pred_classes),
                VIS_NMS_THRESHOLD,
            )
            instances = instances[keep[:VIS_MAX_DETECTIONS]]
            # Draw on the original image; the outputs are in its coordinates (height/width).
            image = read_image(inputs["file_name"], format="RGB")
            drawn = draw_gt_and_predictions(image, raw, instances, metadata)
            stem = os.path.splitext(os.path.basename(inputs["file_name"]))[0]
            path = os.path.join(output_dir, f"{index:03d}_{stem}.png")
            with PathManager.open(path, "wb") as f:
                Image.fromarray(drawn).save(f, format="PNG")
            written.append(path)
    logger.info(
        f"Wrote {len(written)} images with predictions (score > {score_threshold}) of "
        f"{dataset_name or 'the test set'} to {output_dir}"
    )
    return written

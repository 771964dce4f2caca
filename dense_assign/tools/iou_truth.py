"""IoU-truth evaluation: a trained model with the true IoU in place of its predicted quality.

IoU-aware single-stage object detector (Wu, Li, Wang; IVC 2020), Sec. 4.4 and Table 6: at inference,
each prior's predicted IoU is replaced by the IoU of its decoded box with the image's ground truth
(the largest over the GT boxes, ignoring class); scoring, top-k and NMS are the model's own. It
measures how much the IoU branch could give (an upper bound), and needs the GT of the test images.

    python -m dense_assign.tools.iou_truth --config-file CONFIG.py \\
        train.init_checkpoint=PATH/model_final.pth train.output_dir=DIR [key=value ...]

It runs ``train_net.py --eval-only`` (same flags: --num-gpus, --resume; the results go to
<train.output_dir>/eval_results.json) with two overrides in front of yours:
model._target_=dense_assign.tools.iou_truth.IoUTruthDetector (the model, with the same weights,
built as :class:`IoUTruthDetector`) and dataloader.test.mapper.is_train=True (test inputs keep
their GT boxes; the test augmentations stay the deterministic resize). The score function is the
model's (model.test_score_fn, e.g. model.test_score_fn.alpha=0.2); it must use the quality.

Differences from the paper:
- The true IoU is computed for every prior of the image before the score threshold (the score
  function thresholds on it), from the decoded box of each prior, not only for the detections.
"""

import sys
from typing import List, Optional

import torch
from detectron2.engine import default_argument_parser
from detectron2.structures import Boxes, pairwise_iou
from torch import Tensor

from ..meta_arch import OneStageDetector
from ..meta_arch.scoring import needs_quality

__all__ = ["IoUTruthDetector", "IOU_TRUTH_OVERRIDES", "main"]

#: What the tool puts in front of the command-line overrides.
IOU_TRUTH_OVERRIDES = (
    "model._target_=dense_assign.tools.iou_truth.IoUTruthDetector",
    "dataloader.test.mapper.is_train=True",
)


class IoUTruthDetector(OneStageDetector):
    """:class:`OneStageDetector` (same arguments, same weights) whose inference scores each prior
    with the true IoU of its decoded box in place of the head's quality output (see the module
    docstring). Training is unchanged. The inputs at inference must carry GT ``instances``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not needs_quality(self.test_score_fn):
            raise ValueError(
                f"IoU-truth evaluation replaces the predicted quality, but model.test_score_fn="
                f"{self._score_fn_label} uses no quality: give a score function that does "
                "(cls_pow_quality: ClsPowQuality(alpha=...))"
            )
        self._gt_boxes: Optional[List[Tensor]] = None

    def forward(self, batched_inputs):
        if self.training:
            return super().forward(batched_inputs)
        if not all("instances" in x for x in batched_inputs):
            raise ValueError(
                "IoU-truth evaluation needs GT instances in the test inputs: use a test mapper "
                "with is_train=True (dataloader.test.mapper.is_train=True, which "
                "python -m dense_assign.tools.iou_truth sets)"
            )
        self._gt_boxes = [x["instances"].gt_boxes.tensor.to(self.device) for x in batched_inputs]
        try:
            return super().forward(batched_inputs)
        finally:
            self._gt_boxes = None

    def forward_inference(self, images, features, predictions):
        flat = self._transpose(predictions)
        anchors = self.prior_generator(features)
        quality = [
            self.true_iou(level_anchors.tensor, level_deltas, self._gt_boxes)
            for level_anchors, level_deltas in zip(anchors, flat[1])
        ]
        return self.decode_detections(anchors, flat[0], flat[1], quality, images.image_sizes)

    def true_iou(self, anchors: Tensor, deltas: Tensor, gt_boxes: List[Tensor]) -> Tensor:
        """(N, R, 1): the largest IoU of each prior's decoded box with the GT boxes of its image
        (0 for an image without GT), from (R, 4) ``anchors`` and (N, R, 4) ``deltas``."""
        out = []
        for image_deltas, gt in zip(deltas, gt_boxes):
            boxes = self.box2box_transform.apply_deltas(image_deltas, anchors)
            iou = boxes.new_zeros((len(boxes), 1))
            if len(gt):
                iou = pairwise_iou(Boxes(boxes), Boxes(gt)).max(dim=1).values[:, None]
            out.append(iou)
        return torch.stack(out)


def main(argv=None) -> None:
    from ..engine import launch_cli

    doc = __doc__.split("\n\n")
    parser = default_argument_parser(epilog="\n\n".join(doc[1:]))
    parser.prog = "python -m dense_assign.tools.iou_truth"
    parser.description = doc[0]
    args = parser.parse_args(argv)
    args.eval_only = True
    args.opts = [*IOU_TRUTH_OVERRIDES, *args.opts]
    launch_cli(parser, args)


if __name__ == "__main__":
    main(sys.argv[1:])

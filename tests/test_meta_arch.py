"""OneStageDetector: build-time validation, assigner swap by name, empty-GT training, priors."""
import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign.assigners import InsideBoxAssigner

from .helpers import load_model_cfg, make_instances, make_priors, random_batch, shrink_model


def _cfg(path="configs/common/models/fcos.py"):
    return shrink_model(load_model_cfg(path))


def test_assigner_by_registered_name():
    cfg = _cfg()
    cfg.assigner = "InsideBoxAssigner"
    model = instantiate(cfg)
    assert isinstance(model.assigner, InsideBoxAssigner) and model.assigner.num_classes == 3


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: setattr(c, "assigner", "NoSuchAssigner"), "model.assigner='NoSuchAssigner'"),
        (lambda c: setattr(c, "test_score_fn", "softmax"), "model.test_score_fn='softmax'"),
        (lambda c: (setattr(c.head, "quality", "none"), setattr(c.loss, "quality", "none")), "model.head.quality"),
        (lambda c: setattr(c.head, "quality", "none"), "model.head.quality"),
        (lambda c: setattr(c.loss, "num_classes", 5), "model.loss.num_classes=5"),
        (lambda c: setattr(c.head, "num_anchors", 9), "model.head.num_anchors=9"),
        (lambda c: setattr(c, "test_nms_thresh", 0.0), "model.test_nms_thresh"),
        (lambda c: setattr(c.head, "conv_dims", []), "model.head.conv_dims"),
    ],
)
def test_bad_config_names_the_key(mutate, message):
    cfg = _cfg()
    mutate(cfg)
    with pytest.raises(Exception) as info:
        instantiate(cfg)
    assert message in str(info.value) or message in str(info.value.__cause__)


@pytest.mark.parametrize(
    "path",
    [
        "configs/common/models/fcos.py",
        "configs/common/models/retinanet.py",
        "configs/common/models/iou_aware_retinanet.py",
        "configs/common/models/atss.py",
        "configs/common/models/pseudo_iou.py",
    ],
)
def test_batch_without_gt_trains_every_parameter(path):
    torch.manual_seed(0)
    model = instantiate(_cfg(path))
    model.train()
    batch = random_batch(num_images=2, num_boxes=3)
    for x in batch:
        x["instances"] = make_instances(torch.zeros(0, 4), torch.zeros(0), (128, 160))
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_cls"].item() > 0.0
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused


def test_priors_layout():
    p = make_priors(image_size=(32, 48), strides=(8, 16))
    assert p.level_sizes == [4 * 6, 2 * 3]
    assert p.grid_sizes == [(4, 6), (2, 3)]
    # row-major (H, W) order with centres at (k + 0.5) * stride
    assert p.centers[:7].tolist() == [[4, 4], [12, 4], [20, 4], [28, 4], [36, 4], [44, 4], [4, 12]]
    assert p.centers[24].tolist() == [8, 8] and p.strides[24].item() == 16
    assert torch.equal(p.levels, torch.tensor([0] * 24 + [1] * 6))
    assert (p.boxes[:, 2] - p.boxes[:, 0]).tolist() == [8.0] * 24 + [16.0] * 6

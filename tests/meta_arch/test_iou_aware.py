"""IoU-aware RetinaNet: IoU target, head placement, and the IoU-truth (oracle) evaluation tool."""

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.events import EventStorage
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import dense_assign.modeling  # noqa: F401
from dense_assign.engine import load_config
from dense_assign.losses import DenseLoss
from dense_assign.meta_arch.scoring import ClsPowQuality
from dense_assign.structures import AssignResult, DensePredictions
from dense_assign.tools.iou_truth import IOU_TRUTH_OVERRIDES, IoUTruthDetector

from ..helpers import (
    REPO,
    load_model_cfg,
    make_instances,
    make_priors,
    random_batch,
    shrink_model,
)

CFG = "configs/common/models/iou_aware_retinanet.py"


def test_iou_target_is_pairwise_iou_of_decoded_boxes():
    priors = make_priors(image_size=(32, 32), strides=(8,))
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(1, 16, 4, generator=g) * 0.2
    quality = torch.randn(1, 16, 1, generator=g)
    gt = torch.tensor([[2.0, 3.0, 14.0, 12.0], [10.0, 10.0, 30.0, 28.0]])
    matched = torch.tensor([0, 0, -1, -1, 0, 1, 1, -1, -1, -1, 1, -1, -1, -1, -1, -1])
    labels = torch.where(matched >= 0, 0, 1)
    boxes = torch.where((matched >= 0)[:, None], gt[matched.clamp(min=0)], torch.zeros(4))
    preds = DensePredictions(
        logits=torch.zeros(1, 16, 1), deltas=deltas, quality=quality, features=[]
    )
    tf = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    loss = DenseLoss(num_classes=1, box_loss="smooth_l1", quality="iou", normalizer="num_pos")
    out = loss(
        priors=priors,
        predictions=preds,
        assignments=[AssignResult(labels=labels, matched_idxs=matched, matched_gt_boxes=boxes)],
        box2box_transform=tf,
    )
    pos = matched >= 0
    decoded = tf.apply_deltas(deltas[0, pos], priors.boxes[pos])
    target = pairwise_iou(Boxes(decoded), Boxes(boxes[pos])).diagonal()
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            quality[0, pos, 0], target, reduction="sum"
        )
        / pos.sum()
    )
    assert out["loss_iou"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_iou_branch_is_one_conv_on_the_last_box_tower_layer_per_anchor():
    model = instantiate(shrink_model(load_model_cfg(CFG)))
    head = model.head
    assert head.quality == "iou" and head.quality_tower == "box"
    assert head.quality_pred.out_channels == 9 and head.quality_pred.kernel_size == (3, 3)
    assert head.quality_pred.in_channels == head.bbox_subnet[-2].out_channels  # conv before ReLU
    model.train()
    with EventStorage():
        losses = model(random_batch(num_images=2, num_classes=3))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_iou"}
    sum(losses.values()).backward()
    assert head.quality_pred.weight.grad is not None and head.cls_subnet[0].weight.grad is not None


def _coco_ap(gt_box, dets):
    """COCO AP of ``dets`` [(box xyxy, score)] against one GT box of class 0 on one image."""
    x1, y1, x2, y2 = gt_box
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 160, "height": 128}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        ],
    }
    gt.createIndex()
    res = gt.loadRes(
        np.array(
            [[1, b[0], b[1], b[2] - b[0], b[3] - b[1], s, 1] for b, s in dets], dtype=np.float64
        )
    )
    ev = COCOeval(gt, res, "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats[0]


def _iou_truth_model(cfg, model):
    """``model`` (same config, same weights) built as the IoU-truth tool builds it."""
    cfg = cfg.copy()
    cfg._target_ = IoUTruthDetector
    oracle = instantiate(cfg).eval()
    oracle.load_state_dict(model.state_dict())
    return oracle


def test_iou_truth_option_beats_predicted_iou_on_a_fixed_case():
    cfg = shrink_model(load_model_cfg(CFG), num_classes=1)
    model = instantiate(cfg).eval()
    oracle_model = _iou_truth_model(cfg, model)
    image = torch.zeros(3, 128, 160)
    with torch.no_grad():
        feats = model.backbone(model.preprocess_image([{"image": image}]).tensor)
        feats = [feats[f] for f in model.head_in_features]
    anchors = Boxes.cat(model.prior_generator(feats)).tensor
    a = (8 * 20 + 10) * 9 + 4  # level 0 (16 x 20 locations): row 8, col 10, anchor 4 (ratio 1)
    gt = anchors[a].clone()
    ious = pairwise_iou(Boxes(gt[None]), Boxes(anchors))[0]
    inside = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2] <= 160) & (anchors[:, 3] <= 128)
    # a poorer box that NMS (0.5) merges with a
    b = int(torch.nonzero((ious > 0.55) & (ious < 0.7) & inside)[0])
    # crafted head outputs: zero deltas (boxes = anchors), two confident priors a and b; the
    # predicted IoU prefers the poorer box b
    sizes = [f.shape[-2] * f.shape[-1] * 9 for f in feats]

    def fake_head(features):
        logits = torch.full((sum(sizes),), -20.0)
        logits[[a, b]] = 2.0
        q = torch.full((sum(sizes),), -5.0)
        q[a], q[b] = -2.0, 3.0
        out_l, out_d, out_q, start = [], [], [], 0
        for f, n in zip(features, sizes):
            h, w = f.shape[-2:]
            out_l.append(logits[start : start + n].view(1, h, w, 9).permute(0, 3, 1, 2))
            out_q.append(q[start : start + n].view(1, h, w, 9).permute(0, 3, 1, 2))
            out_d.append(torch.zeros(1, 36, h, w))
            start += n
        return out_l, out_d, out_q

    model.head.forward = oracle_model.head.forward = fake_head
    inputs = [{"image": image, "instances": make_instances(gt[None], [0], (128, 160))}]
    with torch.no_grad():
        predicted = model(inputs)[0]["instances"]
        oracle = oracle_model(inputs)[0]["instances"]
    assert len(predicted) == len(oracle) == 1  # NMS keeps one of the two
    assert torch.allclose(predicted.pred_boxes.tensor[0], anchors[b])
    assert torch.allclose(oracle.pred_boxes.tensor[0], gt)
    ap_pred = _coco_ap(
        gt.tolist(), [(predicted.pred_boxes.tensor[0].tolist(), predicted.scores[0].item())]
    )
    ap_true = _coco_ap(
        gt.tolist(), [(oracle.pred_boxes.tensor[0].tolist(), oracle.scores[0].item())]
    )
    assert ap_true == pytest.approx(1.0) and ap_pred < 0.5


def test_oracle_needs_gt_and_a_quality_score():
    cfg = shrink_model(load_model_cfg(CFG))
    cfg._target_ = IoUTruthDetector
    model = instantiate(cfg).eval()
    with pytest.raises(ValueError, match="is_train=True"):
        model([{"image": torch.zeros(3, 64, 64)}])
    cfg.test_score_fn = "cls"
    with pytest.raises(
        ValueError, match=r"IoU-truth evaluation .* model.test_score_fn='cls' uses no"
    ):
        instantiate(cfg)


def test_iou_truth_tool_overrides_build_the_iou_truth_model():
    """The tool's overrides on a packaged config: the model class and a test mapper with GT."""
    cfg = load_config(
        str(REPO / "configs/Synthetic-Detection/iou_aware_retinanet_R_18_FPN.py"),
        [*IOU_TRUTH_OVERRIDES, "model.test_score_fn.alpha=0.2"],
    )
    assert cfg.dataloader.test.mapper.is_train is True
    model = instantiate(cfg.model)
    assert type(model) is IoUTruthDetector and model.test_score_fn == ClsPowQuality(alpha=0.2)


def test_iou_truth_tool_reports_a_bad_config_in_one_line(tmp_path, capsys):
    """The tool's errors are train_net.py's (engine.launch_cli): one line naming the file or key."""
    from dense_assign.tools import iou_truth

    config = str(REPO / "configs/Synthetic-Detection/iou_aware_retinanet_R_18_FPN.py")
    for argv, named in (
        (["--config-file", str(tmp_path / "missing.py")], "missing.py"),
        (["--config-file", config, "model.head.conv_dims=[]"], "model.head.conv_dims"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            iou_truth.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("python -m dense_assign.tools.iou_truth: error: ") and named in last

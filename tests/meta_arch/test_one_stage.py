"""OneStageDetector: build-time validation, assigner swap by name, empty-GT training, priors."""

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401
from dense_assign.assigners import InsideBoxAssigner
from dense_assign.meta_arch.scoring import ClsPowQuality, SqrtClsQuality

from ..helpers import load_model_cfg, make_instances, make_priors, random_batch, shrink_model


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
        (
            lambda c: (setattr(c.head, "quality", "none"), setattr(c.loss, "quality", "none")),
            "model.head.quality",
        ),
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


def test_score_fn_by_name_or_callable_gives_the_same_detections():
    def sqrt_cls_quality_gated(cls, quality):  # a plain function: needs_quality by default
        return cls, torch.sqrt(cls * quality)

    outputs = []
    for score_fn in (
        "sqrt_cls_quality_gated",  # fcos.py's name
        L(SqrtClsQuality)(gated=True),
        sqrt_cls_quality_gated,
    ):
        cfg = _cfg()
        cfg.test_score_fn = score_fn
        cfg.test_score_thresh = 0.005  # a random head's class probabilities are about 0.01
        torch.manual_seed(0)
        model = instantiate(cfg).eval()
        with torch.no_grad():
            outputs.append(model(random_batch(num_images=2, num_boxes=3)))
    assert len(outputs[0][0]["instances"]) > 10  # something to compare
    for out in outputs[1:]:
        for a, b in zip(outputs[0], out):
            a, b = a["instances"], b["instances"]
            assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
            assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)
    # a callable that needs a quality, on a head without one: the message names the callable
    cfg = _cfg()
    cfg.head.quality = cfg.loss.quality = "none"
    cfg.test_score_fn = L(ClsPowQuality)(alpha=0.3)
    with pytest.raises(ValueError, match=r"model.test_score_fn=ClsPowQuality\(alpha=0.3\) needs"):
        instantiate(cfg)


def test_priors_layout():
    p = make_priors(image_size=(32, 48), strides=(8, 16))
    assert p.level_sizes == [4 * 6, 2 * 3]
    assert p.grid_sizes == [(4, 6), (2, 3)]
    # row-major (H, W) order with centres at (k + 0.5) * stride
    assert p.centers[:7].tolist() == [[4, 4], [12, 4], [20, 4], [28, 4], [36, 4], [44, 4], [4, 12]]
    assert p.centers[24].tolist() == [8, 8] and p.strides[24].item() == 16
    assert torch.equal(p.levels, torch.tensor([0] * 24 + [1] * 6))
    assert (p.boxes[:, 2] - p.boxes[:, 0]).tolist() == [8.0] * 24 + [16.0] * 6


def test_assignment_statistics_hand_case():
    from dense_assign.assigners import FCOSAssigner
    from dense_assign.evaluation import assignment_statistics

    priors = make_priors(image_size=(32, 32), strides=(8, 16))
    # same hand case as tests/assigners/test_foundation.py::test_fcos_hand_case: GT A gets 4 level-0
    # positives, GT B 1 on level 0 and 4 on level 1; a second image has one GT with no positive
    a, b = [0.0, 0.0, 20.0, 20.0], [6.0, 6.0, 30.0, 30.0]
    gt1 = make_instances([a, b], [0, 1], (32, 32))
    gt2 = make_instances([[4.0, 4.0, 12.0, 12.0]], [0], (32, 32))  # corners on points: none inside
    assigner = FCOSAssigner(num_classes=2, scale_ranges=[(0, 16), (16, 1e8)])
    results = [assigner(priors, gt1), assigner(priors, gt2)]
    stats = assignment_statistics(priors, results, [gt1, gt2], num_classes=2)
    assert stats["pos_per_gt_mean"] == pytest.approx(9 / 3)
    assert stats["pos_per_gt_min"] == 0
    assert stats["gt_without_pos_frac"] == pytest.approx(1 / 3)
    assert stats["pos_frac_level0"] == pytest.approx(5 / 9)
    assert stats["pos_frac_level1"] == pytest.approx(4 / 9)

    # prior boxes: level-0 8x8 squares inside A (IoU 64/400 each); (20,20) square [16,16,24,24]
    # inside B (64/576); level-1 16x16 squares centred at (8|24, 8|24) vs B
    def iou(p, g):
        ix = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
        iy = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
        inter = ix * iy
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(p) + area(g) - inter)

    lvl1 = [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32]]
    expected = (4 * 64 / 400 + 64 / 576 + sum(iou(p, b) for p in lvl1)) / 9
    assert stats["pos_prior_iou_mean"] == pytest.approx(expected, rel=1e-6)


def test_assigner_stats_are_logged_as_batch_means():
    from dense_assign.meta_arch import OneStageDetector
    from dense_assign.structures import AssignResult

    priors = make_priors(image_size=(16, 16), strides=(8,))

    def result(stats):  # all background
        R = len(priors)
        return AssignResult(
            labels=torch.full((R,), 2, dtype=torch.long),
            matched_idxs=torch.full((R,), -1, dtype=torch.long),
            matched_gt_boxes=torch.zeros(R, 4),
            stats=stats,
        )

    class _Detector:  # _log_assignment_stats reads only num_classes
        num_classes = 2

    empty_gt = make_instances([], [], (16, 16))
    results = [result({"level_weight": 0.2, "num_gt": 3.0}), result({"level_weight": 0.6})]
    with EventStorage(start_iter=0) as storage:
        OneStageDetector._log_assignment_stats(_Detector(), priors, results, [empty_gt] * 2)
        logged = {k: v[0] for k, v in storage.latest().items()}
    assert logged["assigner/level_weight"] == pytest.approx(0.4)
    assert logged["assigner/num_gt"] == pytest.approx(3.0)  # only the image that reports it


def test_priors_are_kept_per_feature_size_between_steps():
    """A training step whose feature maps have sizes seen before reuses their priors (and the
    grid kept on them); other sizes get their own; the most recently used few are kept."""
    from dense_assign.meta_arch import one_stage

    model = instantiate(_cfg())

    def feats(h, w):
        return [torch.zeros(1, 4, -(-h // s), -(-w // s)) for s in (8, 16, 32, 64, 128)]

    a = model.priors_for(feats(128, 128))
    assert model.priors_for(feats(128, 128)) is a
    b = model.priors_for(feats(128, 256))
    assert b is not a and len(b) > len(a)
    assert model.priors_for(feats(128, 128)) is a
    for i in range(one_stage.PRIOR_CACHE_SIZE):
        model.priors_for(feats(128, 384 + 128 * i))
    assert model.priors_for(feats(128, 128)) is not a  # dropped: the least recently used

"""The contract every registered assigner keeps (README.md, "Assigner interface")."""

import pytest
import torch

import dense_assign.modeling  # noqa: F401  (registers every assigner)
from dense_assign.registry import ASSIGNER_REGISTRY
from dense_assign.structures import DensePredictions

from ..helpers import make_instances, make_priors, random_instances

K = 3
NAMES = sorted(name for name, _ in ASSIGNER_REGISTRY)


def _predictions(priors, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = len(priors)
    feats = [torch.randn(1, 8, h, w, generator=g) for h, w in priors.grid_sizes]
    return DensePredictions(
        logits=torch.randn(R, K, generator=g),
        deltas=torch.rand(R, 4, generator=g) * 4,
        quality=torch.randn(R, 1, generator=g),
        features=feats,
    )


def _run(name, priors, gt, **kwargs):
    assigner = ASSIGNER_REGISTRY.get(name)(num_classes=K, **kwargs)
    preds = _predictions(priors) if getattr(assigner, "prediction_aware", False) else None
    return assigner(priors, gt, predictions=preds, image_size=gt.image_size)


def _random_gt(n, size=(256, 320), seed=0, min_wh=2.0, max_wh=120.0):
    return random_instances(n, size, seed, min_wh, max_wh, num_classes=K)


def _check_result(r, priors, gt):
    R = len(priors)
    assert r.labels.shape == (R,) and r.labels.dtype == torch.long
    assert r.matched_idxs.shape == (R,) and r.matched_idxs.dtype == torch.long
    assert r.matched_gt_boxes.shape == (R, 4)
    assert ((r.labels >= -1) & (r.labels <= K)).all()
    pos = (r.labels >= 0) & (r.labels < K)
    assert (r.matched_idxs[pos] >= 0).all() and (r.matched_idxs < max(len(gt), 1)).all()
    if pos.any():
        idx = r.matched_idxs[pos]
        assert torch.equal(r.labels[pos], gt.gt_classes[idx])
        assert torch.equal(r.matched_gt_boxes[pos], gt.gt_boxes.tensor[idx])
    assert torch.isfinite(r.matched_gt_boxes).all()
    if r.loss_weights is not None:
        assert r.loss_weights.shape == (R,) and torch.isfinite(r.loss_weights).all()
        assert (r.loss_weights >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_regular_image(name):
    priors = make_priors(image_size=(256, 320), strides=(8, 16, 32, 64, 128))
    gt = _random_gt(8)
    r = _run(name, priors, gt)
    _check_result(r, priors, gt)
    assert ((r.labels >= 0) & (r.labels < K)).sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_empty_gt_is_all_background(name):
    priors = make_priors(image_size=(64, 96), strides=(8, 16))
    gt = make_instances(torch.zeros(0, 4), torch.zeros(0), (64, 96))
    r = _run(name, priors, gt)
    _check_result(r, priors, gt)
    assert (r.labels == K).all()


@pytest.mark.parametrize("name", NAMES)
def test_empty_priors(name):
    priors = make_priors(image_size=(64, 64), strides=(8,))
    empty = type(priors)(
        boxes=priors.boxes[:0],
        centers=priors.centers[:0],
        strides=priors.strides[:0],
        levels=priors.levels[:0],
        level_sizes=[0],
        grid_sizes=[(0, 0)],
        level_strides=[8],
        num_anchors=1,
        offset=0.5,
    )
    gt = _random_gt(3, size=(64, 64))
    r = _run(name, empty, gt)
    assert r.labels.shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_boxes(name):
    priors = make_priors(image_size=(64, 64), strides=(8, 16))
    # a zero-area box, a zero-width box on a point, a box far outside the image, a tiny box
    gt = make_instances(
        [[10, 10, 10, 10], [12, 4, 12, 40], [500, 500, 600, 600], [30, 30, 31, 31.5]],
        [0, 1, 2, 0],
        (64, 64),
    )
    r = _run(name, priors, gt)
    _check_result(r, priors, gt)


@pytest.mark.parametrize("name", NAMES)
def test_many_gt_chunked_equals_dense(name):
    priors = make_priors(image_size=(256, 320), strides=(8, 16, 32, 64, 128))
    gt = _random_gt(300, seed=2, max_wh=60.0)
    dense = _run(name, priors, gt, chunk_pairs=1 << 30)
    chunked = _run(name, priors, gt, chunk_pairs=len(priors) * 16)
    _check_result(dense, priors, gt)
    assert torch.equal(dense.labels, chunked.labels)
    assert torch.equal(dense.matched_idxs, chunked.matched_idxs)


@pytest.mark.parametrize("name", NAMES)
def test_thousand_gt(name):
    # 1000 boxes on a 512x640 image: must run (chunked) and keep the contract
    priors = make_priors(image_size=(512, 640), strides=(8, 16, 32, 64, 128))
    gt = _random_gt(1000, size=(512, 640), seed=3, min_wh=4.0, max_wh=40.0)
    r = _run(name, priors, gt)
    _check_result(r, priors, gt)
    assert ((r.labels >= 0) & (r.labels < K)).sum() > 100

"""PAA (probabilistic anchor assignment): the mixture fit checked by hand and against a per-GT loop
(and scikit-learn when it is installed), hand-computed assignments, equality of the assigner with a
dense reference kept here (random, edge and crowded inputs), training steps on a point model, an
anchor model and the PAA config, a 1000-box image, and the box voting of the PAA config."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances, pairwise_iou
from fvcore.nn import giou_loss, sigmoid_focal_loss

import dense_assign.modeling  # noqa: F401  (registers every assigner)
from dense_assign.assigners import PAAAssigner
from dense_assign.assigners.paa import fit_gaussian_mixture, separate_candidates
from dense_assign.box_ops import pair_iou
from dense_assign.meta_arch import OneStageDetector
from dense_assign.meta_arch.box_voting import BoxVoting
from dense_assign.structures import DensePredictions

from ..helpers import (
    REPO,
    BoxesAsDeltas,
    config_priors,
    make_instances,
    make_priors,
    random_batch,
    random_instances,
    random_logits_and_deltas,
    shrink_model,
    train_steps,
)

K = 2


def _preds(logits, deltas, quality=None):
    return DensePredictions(logits=logits, deltas=deltas, quality=quality, features=[])


def _positives(r, num_classes=K):
    pos = (r.labels >= 0) & (r.labels < num_classes)
    return {int(i): int(r.matched_idxs[i]) for i in pos.nonzero().flatten()}


def _rows(values_list):
    """(M, C) float64 values and mask of a list of 1-D value lists (padded with garbage)."""
    cols = max(len(v) for v in values_list)
    x = torch.full((len(values_list), cols), 123.0, dtype=torch.float64)
    mask = torch.zeros(x.shape, dtype=torch.bool)
    for i, v in enumerate(values_list):
        x[i, : len(v)] = torch.as_tensor(v, dtype=torch.float64)
        mask[i, : len(v)] = True
    return x, mask


# ------------------------------------------------------------------ the per-GT loop reference
def loop_gmm(values, max_iter=100, tol=1e-3, reg_covar=1e-6):
    """The EM of one GT, written out in numpy with the textbook density
    log N(x | mu, var) = -(log 2 pi + log var + (x - mu)^2 / var) / 2, and the official code's
    separation: (weights, means, variances, iterations, (n,) bool positives) of ascending
    ``values``."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None, None, None, 0, np.ones(n, dtype=bool)
    w, mu, var = np.array([0.5, 0.5]), np.array([x.min(), x.max()]), np.array([1.0, 1.0])

    def weighted_log_prob(w, mu, var):
        lp = -0.5 * (np.log(2 * np.pi) + np.log(var) + (x[:, None] - mu) ** 2 / var)
        return lp + np.log(w)

    lower, it = -np.inf, 0
    for it in range(1, max_iter + 1):
        wlp = weighted_log_prob(w, mu, var)
        top = wlp.max(axis=1, keepdims=True)
        log_norm = (top + np.log(np.exp(wlp - top).sum(axis=1, keepdims=True)))[:, 0]
        resp = np.exp(wlp - log_norm[:, None])
        nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
        mu = (resp * x[:, None]).sum(axis=0) / nk
        var = (resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk + reg_covar
        w = nk / nk.sum()
        bound = log_norm.mean()
        if abs(bound - lower) < tol:
            break
        lower = bound
    wlp = weighted_log_prob(w, mu, var)
    first = ~(wlp[:, 1] > wlp[:, 0])
    top = wlp.max(axis=1)
    score = top + np.log(np.exp(wlp - top[:, None]).sum(axis=1))
    if not first.any():
        return w, mu, var, it, np.ones(n, dtype=bool)
    best = score[first].max()
    bound_idx = min(i for i in range(n) if first[i] and score[i] == best)
    return w, mu, var, it, np.arange(n) <= bound_idx


def _assert_fit_equals_loop(values_list, **kwargs):
    x, mask = _rows(values_list)
    fit = fit_gaussian_mixture(x, mask, **kwargs)
    positive = separate_candidates(x, mask, fit)
    for i, values in enumerate(values_list):
        w, mu, var, it, expected = loop_gmm(values, **kwargs)
        assert positive[i, : len(values)].tolist() == expected.tolist(), (i, values)
        assert not positive[i, len(values) :].any()
        if w is None:
            continue
        assert int(fit.n_iter[i]) == it, (i, values)
        np.testing.assert_allclose(fit.weights[i].numpy(), w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.means[i].numpy(), mu, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.variances[i].numpy(), var, rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------ 1. the mixture
SPLIT = [0.1, 0.12, 0.15, 0.9, 1.0, 1.1]


def test_first_em_iteration_by_hand():
    # means 0.1 and 1.1, variances 1, weights 1/2: the responsibility of component 0 is
    # sigmoid(((x - 1.1)^2 - (x - 0.1)^2) / 2) = sigmoid(0.6 - x)
    r0 = [1 / (1 + math.exp(-(0.6 - v))) for v in SPLIT]
    r1 = [1 - r for r in r0]
    expected = []
    for r in (r0, r1):
        nk = sum(r)
        mean = sum(ri * v for ri, v in zip(r, SPLIT)) / nk
        var = sum(ri * (v - mean) ** 2 for ri, v in zip(r, SPLIT)) / nk + 1e-6
        expected.append((nk / 6, mean, var))
    fit = fit_gaussian_mixture(*_rows([SPLIT]), max_iter=1)
    for k in range(2):
        got = (fit.weights[0, k].item(), fit.means[0, k].item(), fit.variances[0, k].item())
        assert got == pytest.approx(expected[k], rel=1e-12)
    assert fit.n_iter.tolist() == [1] and fit.converged.tolist() == [False]


def test_gmm_split_of_a_hand_list():
    # two clear groups: the low one is component 0, and its best-explained member is the last of
    # the three (log-likelihoods -0.645, -0.599, -0.534 under the fitted mixture)
    x, mask = _rows([SPLIT])
    fit = fit_gaussian_mixture(x, mask)
    assert fit.n_iter.tolist() == [3] and fit.converged.tolist() == [True]  # as scikit-learn
    assert separate_candidates(x, mask, fit).tolist() == [[True] * 3 + [False] * 3]
    _assert_fit_equals_loop([SPLIT])


def test_identical_values_zero_variance_and_single_candidates():
    # identical scores: both components collapse onto the value with variance reg_covar; every
    # candidate is component 0 with the same likelihood, so only the first is positive
    x, mask = _rows([[0.7] * 5, [2.0], [0.3, 0.3], []])
    fit = fit_gaussian_mixture(x, mask)
    assert fit.variances[0].tolist() == [1e-6, 1e-6]
    assert fit.means[0].tolist() == pytest.approx([0.7, 0.7], rel=1e-15)
    positive = separate_candidates(x, mask, fit)
    assert positive[0].tolist() == [True, False, False, False, False]
    assert positive[1].tolist() == [True, False, False, False, False]  # one candidate: positive
    assert positive[2].tolist() == [True, False, False, False, False]
    assert not positive[3].any()  # no candidate
    # the variances reach reg_covar at the first M-step, the likelihood stops changing at the third
    assert fit.n_iter.tolist() == [3, 0, 3, 0]
    assert fit.converged.tolist() == [True, False, True, False]
    _assert_fit_equals_loop([[0.7] * 5, [2.0], [0.3, 0.3], []])


def test_reg_covar_and_max_iter_options():
    values = [[0.0, 0.0, 0.0, 5.0, 5.0], [0.1, 0.2, 4.0, 4.1, 4.2, 9.0]]
    for kwargs in ({"reg_covar": 1e-2}, {"max_iter": 2}, {"tol": 0.0, "max_iter": 7}):
        _assert_fit_equals_loop(values, **kwargs)
    x, mask = _rows(values)
    assert fit_gaussian_mixture(x, mask, reg_covar=1e-2).variances[0].tolist() == [1e-2, 1e-2]


def _random_rows(num, seed, ties=False):
    g = np.random.default_rng(seed)
    rows = []
    for i in range(num):
        n = int(g.integers(1, 46))
        kind = i % 4
        if kind == 0:
            v = g.random(n) * 3
        elif kind == 1:  # two groups
            v = np.concatenate([g.random(n // 2 + 1) * 0.3, 1 + g.random(n - n // 2 - 1) * 2])
        elif kind == 2:  # heavy tail
            v = np.exp(g.normal(size=n) * 2)
        else:  # a focal + GIoU-like score: a small cluster and a spread of large ones
            v = np.concatenate([0.2 + g.random(3) * 0.05, 0.5 + g.random(n) * 3])
        if ties:
            v = np.round(v * 2) / 2
        rows.append(np.sort(v).tolist())
    return rows


@pytest.mark.parametrize("kind", ["random", "ties", "crowded"])
def test_vectorized_em_equals_the_per_gt_loop(kind):
    num = 1000 if kind == "crowded" else 100
    _assert_fit_equals_loop(_random_rows(num, seed=len(kind), ties=kind == "ties"))


def test_equals_scikit_learn():
    skm = pytest.importorskip("sklearn.mixture")
    import warnings

    rows = [r for r in _random_rows(120, seed=9) if len(r) >= 2] + [SPLIT, [0.7] * 4]
    x, mask = _rows(rows)
    fit = fit_gaussian_mixture(x, mask)
    positive = separate_candidates(x, mask, fit)
    for i, values in enumerate(rows):
        v = np.asarray(values).reshape(-1, 1)
        # the official code's call (covariance "full"; mmdetection: "diag", the same 1-D model)
        gmm = skm.GaussianMixture(
            2,
            weights_init=[0.5, 0.5],
            means_init=[[v.min()], [v.max()]],
            precisions_init=[[[1.0]], [[1.0]]],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm.fit(v)
        assert gmm.n_iter_ == int(fit.n_iter[i])
        np.testing.assert_allclose(gmm.means_[:, 0], fit.means[i].numpy(), rtol=1e-9, atol=1e-12)
        first = gmm.predict(v) == 0
        scores = gmm.score_samples(v)
        bound = np.nonzero(first & (scores == scores[first].max()))[0].min()
        assert positive[i, : len(values)].tolist() == (np.arange(len(values)) <= bound).tolist()


# ------------------------------------------------------------------ 2. hand-computed assignments
# a 32 x 48 image, one level of stride 8: 4 x 6 points at (k + 0.5) 8 with 8 x 8 boxes (the cells);
# prior index = 6 * row + column
def _cell(col, row):
    return 6 * row + col


GT_A = [0.0, 0.0, 24.0, 16.0]  # covers the cells of columns 0-2, rows 0-1: IoU 1/6 each


def _focal_logit(score):
    """The logit z whose focal loss against 1 (alpha 0.25, gamma 2) is ``score`` (bisection)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        z = (lo + hi) / 2
        p = 1 / (1 + math.exp(-z))
        value = 0.25 * (1 - p) ** 2 * -math.log(p)
        lo, hi = (z, hi) if value > score else (lo, z)
    return (lo + hi) / 2


def _hand_inputs(gt_boxes, gt_classes, scores):
    """Priors, GTs and predictions where every prior predicts GT_A's box exactly (GIoU loss 0 for
    GT_A) and its class logits are -30 (focal loss ~0) but the GT class's at the priors of
    ``scores`` ({prior: (class, target focal loss)})."""
    priors = make_priors(image_size=(32, 48), strides=(8,))
    R = len(priors)
    deltas = torch.tensor([GT_A] * R)
    logits = torch.full((R, K), -30.0)
    for prior, (cls, score) in scores.items():
        logits[prior, cls] = _focal_logit(score)
    gt = make_instances(gt_boxes, gt_classes, (32, 48))
    return priors, gt, _preds(logits, deltas)


def _assigner(**kwargs):
    return PAAAssigner(num_classes=K, box2box_transform=BoxesAsDeltas(), **kwargs)


def test_hand_case_split_single_candidate_and_scores():
    a_cells = [_cell(0, 0), _cell(1, 0), _cell(2, 0), _cell(0, 1), _cell(1, 1), _cell(2, 1)]
    shuffled = [0.9, 0.1, 1.1, 0.15, 1.0, 0.12]  # the scores of SPLIT, out of order
    scores = {p: (0, s) for p, s in zip(a_cells, shuffled)}
    tiny = [42.0, 26.0, 44.0, 28.0]  # inside cell (5, 3): IoU 4 / 64 < 0.1, a low-quality match
    priors, gt, preds = _hand_inputs([GT_A, tiny], [0, 1], scores)
    a = _assigner()
    cand, index, mask, num_initial = a.candidates(priors, gt, preds)
    assert num_initial == 7
    # GT_A's six anchors sorted by score; the tiny GT's one anchor
    by_score = [_cell(1, 0), _cell(2, 1), _cell(0, 1), _cell(0, 0), _cell(1, 1), _cell(2, 0)]
    assert index[0].tolist() == by_score
    assert cand[0].tolist() == pytest.approx(sorted(shuffled), rel=1e-5)
    assert mask.sum(dim=1).tolist() == [6, 1] and index[1, 0] == _cell(5, 3)
    r = a(priors, gt, predictions=preds)
    # the three low scores of GT_A (0.1, 0.12, 0.15) and the tiny GT's single candidate
    assert _positives(r) == {_cell(1, 0): 0, _cell(2, 1): 0, _cell(0, 1): 0, _cell(5, 3): 1}
    assert r.labels[_cell(5, 3)] == 1 and r.labels[_cell(0, 0)] == K
    assert r.cls_targets is None
    assert r.stats["initial_pos"] == 7 and r.stats["candidates_mean"] == 3.5
    assert r.stats["gt_without_pos"] == 0


def test_score_is_focal_over_classes_plus_weighted_giou():
    priors = make_priors(image_size=(32, 48), strides=(8,))
    R = len(priors)
    deltas = torch.tensor([GT_A] * R)
    deltas[_cell(1, 0)] = torch.tensor([0.0, 0.0, 12.0, 16.0])  # IoU 1/2, enclosed: GIoU loss 1/2
    deltas[_cell(2, 0)] = torch.tensor([30.0, 0.0, 20.0, 16.0])  # inverted: collapses to x = 30
    logits = torch.zeros(R, K)
    gt = make_instances([GT_A], [1], (32, 48))
    a = _assigner()
    cand, index, mask, _ = a.candidates(priors, gt, _preds(logits, deltas))
    by_prior = dict(zip(index[0][mask[0]].tolist(), cand[0][mask[0]].tolist()))
    # logits 0: focal against 1 is 0.25 x 0.25 x log 2, against 0 is 0.75 x 0.25 x log 2
    focal = 0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)
    assert by_prior[_cell(0, 0)] == pytest.approx(focal, rel=1e-6)
    assert by_prior[_cell(1, 0)] == pytest.approx(focal + 1.3 * 0.5, rel=1e-6)
    # the zero-width box [30, 0, 30, 16]: IoU 0, enclosing box 30 x 16, union 384
    giou = 1 - (0 - (30 * 16 - 384) / (30 * 16))
    assert by_prior[_cell(2, 0)] == pytest.approx(focal + 1.3 * giou, rel=1e-6)
    b = _assigner(box_weight=0.0, focal_alpha=-1.0, focal_gamma=0.0)  # plain BCE, no box term
    cand, index, mask, _ = b.candidates(priors, gt, _preds(logits, deltas))
    assert cand[0][mask[0]].tolist() == pytest.approx([2 * math.log(2)] * 6, rel=1e-6)


def test_anchor_of_two_gts_goes_to_the_higher_iou():
    # GT_B covers the cells (1, 0) and (2, 0) only: IoU 1/2 with them, against 1/6 for GT_A
    gt_b = [8.0, 0.0, 24.0, 8.0]
    scores = {_cell(1, 0): (1, 0.01), _cell(2, 0): (1, 0.02), _cell(0, 0): (0, 0.5)}
    priors, gt, preds = _hand_inputs([GT_A, gt_b], [0, 1], scores)
    a = _assigner()
    _, index, mask, _ = a.candidates(priors, gt, preds)
    assert sorted(index[0][mask[0]].tolist()) == [
        _cell(0, 0),
        _cell(0, 1),
        _cell(1, 1),
        _cell(2, 1),
    ]
    assert sorted(index[1][mask[1]].tolist()) == [_cell(1, 0), _cell(2, 0)]
    r = a(priors, gt, predictions=preds)
    pos = _positives(r)
    assert pos[_cell(1, 0)] == 1 and pos.get(_cell(2, 0), 1) == 1
    assert {p for p, m in pos.items() if m == 0} <= {
        _cell(0, 0),
        _cell(0, 1),
        _cell(1, 1),
        _cell(2, 1),
    }
    _assert_same(r, dense_paa(a, priors, gt, preds))


def test_topk_per_level_and_ties_to_the_lowest_prior():
    # two levels (strides 8 and 16: 24 + 6 priors) on 32 x 48 and a GT over the whole image: the
    # anchors' IoUs are 64 / 1536 and 256 / 1536, all above the threshold 0.04; with topk 3 the 3
    # lowest scores of each level are the candidates
    priors = make_priors(image_size=(32, 48), strides=(8, 16))
    R = len(priors)
    whole = [0.0, 0.0, 48.0, 32.0]
    deltas = torch.tensor([whole] * R)  # GIoU loss 0 everywhere
    g = torch.Generator().manual_seed(0)
    logits = torch.stack([torch.randn(R, generator=g), torch.full((R,), -30.0)], dim=1)
    logits[[3, 9, 25], 0] = 8.0  # equal, lowest scores: ties go to the lowest prior index
    gt = make_instances([whole], [0], (32, 48))
    a = PAAAssigner(num_classes=K, topk=3, iou_threshold=0.04, box2box_transform=BoxesAsDeltas())
    cand, index, mask, num_initial = a.candidates(priors, gt, _preds(logits, deltas))
    assert num_initial == R and mask.sum() == 6
    every = torch.arange(R)
    scores = a.anchor_scores(
        priors, _preds(logits, deltas), gt.gt_boxes.tensor, gt.gt_classes, every * 0, every
    )
    expected = []
    for start, end in ((0, 24), (24, R)):
        expected += sorted(range(start, end), key=lambda p: (scores[p].item(), p))[:3]
    expected = sorted(expected, key=lambda p: (scores[p].item(), p))
    assert index[0].tolist() == expected
    assert expected[:3] == [3, 9, 25]  # the tie, by prior index


def test_equal_scores_give_one_positive():
    # every anchor of GT_A with the same score: zero variance, the lowest prior index alone
    scores = {
        p: (0, 0.3)
        for p in (_cell(0, 0), _cell(1, 0), _cell(2, 0), _cell(0, 1), _cell(1, 1), _cell(2, 1))
    }
    priors, gt, preds = _hand_inputs([GT_A], [0], scores)
    assert _positives(_assigner()(priors, gt, predictions=preds)) == {_cell(0, 0): 0}


def test_empty_gt_no_initial_positive_and_iou_targets():
    priors = make_priors(image_size=(32, 48), strides=(8, 16))
    empty = make_instances(torch.zeros(0, 4), torch.zeros(0), (32, 48))
    r = PAAAssigner(num_classes=K)(priors, empty)  # no predictions needed without GT
    assert (r.labels == K).all() and r.cls_targets is None
    r = PAAAssigner(num_classes=K, iou_targets=True)(priors, empty)
    assert torch.equal(r.cls_targets, torch.zeros(len(priors)))
    # a zero-area GT overlaps no anchor: no candidate, no positive
    point = make_instances([[10.0, 10.0, 10.0, 10.0]], [0], (32, 48))
    preds = _preds(torch.zeros(len(priors), K), torch.ones(len(priors), 4))
    r = PAAAssigner(num_classes=K, iou_targets=True)(priors, point, predictions=preds)
    assert (r.labels == K).all() and r.stats["gt_without_pos"] == 1
    # iou_targets: the IoU of each positive's predicted box with its GT
    priors, gt, preds = _hand_inputs([[0.0, 0.0, 24.0, 24.0]], [0], {})
    r = _assigner(iou_targets=True)(priors, gt, predictions=preds)
    pos = (r.labels == 0).nonzero().flatten()
    assert len(pos) > 0 and r.cls_targets[pos].tolist() == pytest.approx([384 / 576] * len(pos))
    assert r.cls_targets.sum() == pytest.approx(len(pos) * 384 / 576)


def test_predictions_are_required_and_not_differentiated_and_validation():
    priors, gt, preds = _hand_inputs([GT_A], [0], {})
    with pytest.raises(ValueError, match="prediction-aware"):
        _assigner()(priors, gt)
    preds.logits.requires_grad_(True)
    preds.deltas.requires_grad_(True)
    r = _assigner(iou_targets=True)(priors, gt, predictions=preds)
    assert not r.cls_targets.requires_grad
    for kwargs, key in (
        ({"topk": 0}, "topk"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"box_weight": -1.0}, "box_weight"),
        ({"reg_covar": 0.0}, "reg_covar"),
        ({"max_iter": 0}, "max_iter"),
        ({"focal_alpha": 2.0}, "focal_alpha"),
        ({"tol": float("nan")}, "tol"),
    ):
        with pytest.raises(ValueError, match=f"model.assigner.{key}"):
            PAAAssigner(num_classes=K, **kwargs)


# ------------------------------------------------------------------ 3. dense reference
def dense_paa(a, priors, gt, preds):
    """The rule with dense (M, R) IoUs and plain loops over GTs and levels: (R,) matched GT per
    prior (-1: background). The initial max-IoU step is written out (best GT per anchor, ties to
    the lowest GT index; low-quality matches: the anchors at a GT's highest nonzero IoU are
    foreground with their own best GT); the scores use the package's elementwise formulas
    (fvcore's focal and GIoU losses); candidates and the mixture: sorts and :func:`loop_gmm`."""
    boxes, classes = gt.gt_boxes.tensor, gt.gt_classes
    R, M = len(priors), len(boxes)
    matched = torch.full((R,), -1, dtype=torch.long)
    if M == 0 or R == 0:
        return matched
    iou = pairwise_iou(Boxes(boxes), Boxes(priors.boxes))  # (M, R)
    best_iou, best_gt = iou.max(dim=0)
    gt_max = iou.max(dim=1).values
    low = ((iou == gt_max[:, None]) & (gt_max[:, None] > 0)).any(dim=0)
    fg = (best_iou >= a.iou_threshold) | low
    pred = a.decode_boxes(preds.deltas.detach().float(), priors.boxes.float())
    pred = torch.cat([pred[:, :2], torch.maximum(pred[:, :2], pred[:, 2:])], dim=1)
    fg_idx = fg.nonzero().flatten()
    gt_of = best_gt[fg_idx]
    onehot = torch.nn.functional.one_hot(classes[gt_of], a.num_classes).float()
    focal = sigmoid_focal_loss(preds.logits[fg_idx].float(), onehot, a.focal_alpha, a.focal_gamma)
    box = giou_loss(pred[fg_idx], boxes[gt_of].float())
    scores = focal.sum(dim=1, dtype=torch.float64) + a.box_weight * box.double()
    per_gt = {m: [] for m in range(M)}
    for r, m, score in zip(fg_idx.tolist(), gt_of.tolist(), scores.tolist()):
        per_gt[m].append((min(score, 1e8), r))
    levels = priors.levels.tolist()
    for m, pairs in per_gt.items():
        cand = []
        for lvl in range(priors.num_levels):
            cand += sorted(p for p in pairs if levels[p[1]] == lvl)[: a.topk]
        cand.sort()
        if not cand:
            continue
        positive = loop_gmm([s for s, _ in cand], a.max_iter, a.tol, a.reg_covar)[4]
        for (_, r), pos in zip(cand, positive):
            if pos:
                matched[r] = m
    return matched


def _assert_same(r, matched):
    assert torch.equal(r.matched_idxs, matched)
    pos = matched >= 0
    assert torch.equal(r.labels == K, ~pos)


PRIOR_CONFIGS = {
    "paa": "configs/common/models/paa.py",  # #A=1 anchors of 8 s at k s, deltas (10, 10, 5, 5)
    "atss_A9": "configs/common/models/atss_A9.py",  # 9 anchors a location
    "fcos": "configs/common/models/fcos.py",  # points, (l, t, r, b) x stride
}


def _config_priors(name, image_size):
    return config_priors(PRIOR_CONFIGS[name], image_size)


def _random_predictions(priors, transform, seed, ties=False):
    return _preds(*random_logits_and_deltas(priors, transform, seed, K, 0.5, ties=ties))


def _edge_gt(size):
    h, w = size
    boxes = [
        [0, 0, 40, 30],  # at the top-left corner
        [w - 50, h - 20, w, h],  # at the bottom-right corner
        [0, 0, w, h],  # the whole image
        [20, 20, 20, 60],  # zero width
        [50, 50, 53, 52],  # smaller than a stride: low-quality matches only
        [60, 60, 120, 110],  # duplicated, same class ...
        [60, 60, 120, 110],
        [60, 60, 120, 110],  # ... and another class
        [w + 10, h + 10, w + 90, h + 60],  # outside the image
        [-30, -30, 8, 8],  # partly outside
    ]
    return make_instances(boxes, [0, 1, 0, 1, 0, 1, 1, 0, 1, 0], size)


CASES = [
    ("paa", "random", False),
    ("paa", "edge", False),
    ("paa", "crowded", False),
    ("paa", "random", True),
    ("atss_A9", "random", False),
    ("atss_A9", "edge", True),
    ("fcos", "random", False),
    ("fcos", "crowded", True),
]


@pytest.mark.parametrize("config,kind,ties", CASES)
def test_equals_dense_reference(config, kind, ties):
    size = (192, 256)
    priors, transform = _config_priors(config, size)
    seed = CASES.index((config, kind, ties))
    preds = _random_predictions(priors, transform, seed, ties=ties)
    gt = {
        "random": lambda: random_instances(10, size, seed, 4.0, 150.0, num_classes=K),
        "edge": lambda: _edge_gt(size),
        "crowded": lambda: random_instances(150, size, seed, 4.0, 60.0, num_classes=K),
    }[kind]()
    a = PAAAssigner(num_classes=K, box2box_transform=transform)
    r = a(priors, gt, predictions=preds)
    ref = dense_paa(a, priors, gt, preds)
    _assert_same(r, ref)
    assert r.stats["num_pos"] > 0
    # in chunks of a few GTs (the max-IoU windows): the same
    chunked = PAAAssigner(num_classes=K, box2box_transform=transform, chunk_pairs=3000)
    _assert_same(chunked(priors, gt, predictions=preds), ref)


def test_priors_off_the_grid_take_every_pair():
    priors, transform = _config_priors("paa", (128, 160))
    perm = torch.randperm(len(priors), generator=torch.Generator().manual_seed(0))
    priors.boxes, priors.centers = priors.boxes[perm], priors.centers[perm]
    priors.strides, priors.levels = priors.strides[perm], priors.levels[perm]
    preds = _random_predictions(priors, transform, seed=5)
    gt = random_instances(20, (128, 160), 5, 4.0, 80.0, num_classes=K)
    a = PAAAssigner(num_classes=K, box2box_transform=transform)
    _assert_same(a(priors, gt, predictions=preds), dense_paa(a, priors, gt, preds))


def test_thousand_boxes_on_800x1333():
    size = (800, 1333)
    priors, transform = _config_priors("paa", size)
    preds = _random_predictions(priors, transform, seed=7)
    gt = random_instances(1000, size, 7, 4.0, 60.0, num_classes=K)
    a = PAAAssigner(num_classes=K, box2box_transform=transform, iou_targets=True)
    r = a(priors, gt, predictions=preds)
    pos = (r.labels >= 0) & (r.labels < K)
    m = r.matched_idxs[pos]
    assert pos.sum() > 500
    assert torch.equal(r.labels[pos], gt.gt_classes[m])
    # at most topk x levels positives a GT; each positive overlaps its GT (IoU > 0)
    assert torch.bincount(m, minlength=len(gt)).max() <= 9 * 5
    assert (pair_iou(priors.boxes[pos], gt.gt_boxes.tensor[m]) > 0).all()
    assert ((r.cls_targets[pos] >= 0) & (r.cls_targets[pos] <= 1)).all()
    assert (r.cls_targets[~pos] == 0).all()
    chunked = PAAAssigner(
        num_classes=K, box2box_transform=transform, iou_targets=True, chunk_pairs=20000
    )
    rc = chunked(priors, gt, predictions=preds)
    assert torch.equal(rc.matched_idxs, r.matched_idxs)
    assert torch.equal(rc.cls_targets, r.cls_targets)


# ------------------------------------------------------------------ 4. training steps
def _train_two_steps(cfg, evaluate=False):
    shrink_model(cfg.model, num_classes=K)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    calls = []
    model.assigner.register_forward_hook(
        lambda module, args, kwargs, out: calls.append((args, kwargs, out)), with_kwargs=True
    )
    batch = random_batch(num_images=2, image_size=(96, 128), num_boxes=4, num_classes=K)
    for losses, latest in train_steps(model, batch, steps=2, lr=1e-3):
        assert latest["assigner/candidates_mean"] >= 1 and latest["assigner/em_iter_max"] >= 2
    assert len(calls) == 4  # 2 iterations x 2 images
    for args, kwargs, r in calls:
        priors, gt, preds = args[0], args[1], kwargs["predictions"]
        detached = _preds(preds.logits.detach(), preds.deltas.detach())
        _assert_same(r, dense_paa(model.assigner, priors, gt, detached))
        assert r.stats["num_pos"] > 0
    if evaluate:
        model.eval()
        with torch.no_grad():
            out = model([{"image": x["image"], "height": 48, "width": 64} for x in batch])
        assert all(len(o["instances"]) <= 100 for o in out)
    return model, losses


def test_training_steps_point_model_by_registered_name():
    # FCOS's model (points, (l, t, r, b) x stride), the assigner chosen by name as on the command
    # line (model.assigner=PAAAssigner): its default decoding is the model's
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/fcos_R_18_FPN.py"))
    cfg.model.assigner = "PAAAssigner"
    model, _ = _train_two_steps(cfg)
    assert isinstance(model.assigner, PAAAssigner)
    assert type(model.assigner.box2box_transform).__name__ == "Box2BoxTransformLinear"


def test_training_steps_anchor_model():
    # the ATSS model (RetinaNet #A=1: 8 s squares, deltas with weights 10, 10, 5, 5) with PAA
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/atss_R_18_FPN.py"))
    cfg.model.assigner = L(PAAAssigner)(
        num_classes="${..num_classes}", box2box_transform="${..box2box_transform}"
    )
    model, _ = _train_two_steps(cfg)
    assert type(model.assigner.box2box_transform).__name__ == "Box2BoxTransform"


def test_paa_config_trains_and_votes():
    cfg = LazyConfig.load(str(REPO / "configs/Synthetic-Detection/paa_R_18_FPN.py"))
    model, losses = _train_two_steps(cfg, evaluate=True)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_iou"}
    a = model.assigner
    assert (a.topk, a.iou_threshold, a.box_weight, a.iou_targets) == (9, 0.1, 1.3, True)
    assert model.prior_generator.offset == 0.0 and model.prior_generator.num_cell_anchors == [1] * 5
    assert isinstance(model.test_box_voting, BoxVoting) and model.test_box_voting.sigma == 0.025
    for folder, suffix in (
        ("COCO-Detection", "R_50_FPN_1x"),
        ("Synthetic-Converge", "R_18_FPN"),
        ("Synthetic-Detection", "R_18_FPN"),
    ):
        c = LazyConfig.load(str(REPO / "configs" / folder / f"paa_{suffix}.py"))
        assert c.model.assigner.box2box_transform == c.model.box2box_transform
        assert (c.model.loss.box_weighting, c.model.loss.use_cls_targets) == ("cls_target", False)
        assert c.model.test_score_fn == "sqrt_cls_quality"
        assert c.train.output_dir.endswith(f"paa_{suffix}")
    # score voting off from the command line (mmdetection's "without score voting" row)
    c = LazyConfig.apply_overrides(c, ["model.test_box_voting=null"])
    assert c.model.test_box_voting is None


# ------------------------------------------------------------------ 5. box voting
def _instances(boxes, scores, classes, size=(40, 40)):
    inst = Instances(size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.long)
    return inst


def _nms(candidates, voting):
    detector = SimpleNamespace(
        test_nms_thresh=0.6, max_detections_per_image=100, test_box_voting=voting
    )
    return OneStageDetector._nms(detector, candidates)


def test_box_voting_by_hand_and_in_the_detector():
    candidates = _instances(
        [
            [0, 0, 10, 10],  # class 0: kept
            [1, 0, 11, 10],  # class 0, IoU 90 / 110 = 9 / 11 with the first: suppressed, votes
            [0, 0, 10, 10],  # class 1: kept, votes only for itself
            [30, 30, 40, 40],  # class 0, overlaps nothing: kept as it is
            [9.95, 0, 19.95, 10],  # class 0, IoU 0.5 / 199.5 with the first: kept, no vote
        ],
        [0.9, 0.5, 0.8, 0.7, 0.6],
        [0, 0, 1, 0, 0],
    )
    nms = _nms(candidates, None)
    assert nms.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    voted = _nms(candidates, BoxVoting(sigma=0.025))
    # the scores and classes are those NMS kept; the boxes are voted
    assert torch.equal(voted.scores, nms.scores)
    assert torch.equal(voted.pred_classes, nms.pred_classes)
    w1 = math.exp(-((1 - 9 / 11) ** 2) / 0.025) * 0.5  # the weight of candidate 1; its own: 0.9
    expected = [(0.9 * a + w1 * b) / (0.9 + w1) for a, b in zip([0, 0, 10, 10], [1, 0, 11, 10])]
    boxes = voted.pred_boxes.tensor
    torch.testing.assert_close(boxes[0], torch.tensor(expected), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0, 10, 10]))
    torch.testing.assert_close(boxes[2], torch.tensor([30.0, 30, 40, 40]))
    # the last kept box has a vote of candidate 1 (IoU 10.5 / 189.5) at a weight ~1e-16
    torch.testing.assert_close(boxes[3], candidates.pred_boxes.tensor[4], rtol=0, atol=1e-5)
    # with a wide sigma the weights are nearly the scores: IoU <= 0.01 still does not vote
    wide = _nms(candidates, BoxVoting(sigma=100.0)).pred_boxes.tensor[0]
    w1 = math.exp(-((1 - 9 / 11) ** 2) / 100.0) * 0.5
    expected = [(0.9 * a + w1 * b) / (0.9 + w1) for a, b in zip([0, 0, 10, 10], [1, 0, 11, 10])]
    torch.testing.assert_close(wide, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert len(BoxVoting()(voted[:0], candidates)) == 0
    for kwargs in ({"sigma": 0.0}, {"min_iou": 1.0}):
        with pytest.raises(ValueError, match="model.test_box_voting"):
            BoxVoting(**kwargs)


def test_box_voting_is_off_by_default_and_validated():
    cfg = LazyConfig.load(str(REPO / "configs/common/models/fcos.py")).model
    assert "test_box_voting" not in cfg
    cfg = shrink_model(cfg)
    cfg.test_box_voting = 3
    with pytest.raises(ValueError, match="model.test_box_voting"):
        instantiate(cfg)

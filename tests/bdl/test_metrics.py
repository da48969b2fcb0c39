"""Bayesian deep learning metrics against hand computations with plain Python and NumPy."""

import math

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from provi import bdl
from provi.bdl import metrics

matplotlib.use("Agg")

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(5, 40, 3)) * 2.0  # 5 draws, 40 inputs, 3 classes
LABELS = RNG.integers(0, 3, size=40)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs():
    return _softmax(LOGITS).mean(0)


def test_log_predictive_is_the_log_of_averaged_softmax():
    got = np.exp(np.asarray(metrics.log_predictive(jnp.asarray(LOGITS))))
    np.testing.assert_allclose(got, _probs(), rtol=1e-5)
    with pytest.raises(ValueError, match="draws, n, classes"):
        metrics.log_predictive(jnp.zeros((3, 2)))


def test_accuracy_nll_brier_by_hand():
    p = _probs()
    lp = jnp.log(jnp.asarray(p))
    acc = sum(int(np.argmax(p[i]) == LABELS[i]) for i in range(40)) / 40
    nll = -sum(math.log(p[i, LABELS[i]]) for i in range(40)) / 40
    brier = sum(sum((p[i, k] - (k == LABELS[i])) ** 2 for k in range(3)) for i in range(40)) / 40
    assert float(bdl.accuracy(lp, LABELS)) == pytest.approx(acc)
    assert float(bdl.nll(lp, LABELS)) == pytest.approx(nll, rel=1e-5)
    assert float(bdl.brier(lp, LABELS)) == pytest.approx(brier, rel=1e-5)
    with pytest.raises(ValueError, match="labels of shape"):
        bdl.nll(lp, LABELS[:5])


def test_ece_by_hand_loop_over_bins():
    p = _probs()
    lp = jnp.log(jnp.asarray(p))
    n_bins = 10
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(40) if (lo < p[i].max() <= hi) or (b == 0 and p[i].max() == 0)]
        if members:
            conf = np.mean([p[i].max() for i in members])
            acc = np.mean([np.argmax(p[i]) == LABELS[i] for i in members])
            total += len(members) / 40 * abs(acc - conf)
    assert float(bdl.ece(lp, LABELS, n_bins)) == pytest.approx(total, rel=1e-5)
    _, _, count = metrics.reliability(lp, LABELS, n_bins)
    assert float(count.sum()) == 40


def test_ece_is_zero_for_a_perfectly_calibrated_predictor():
    # confidence 0.75 in every bin member, and exactly 3 of every 4 right
    p = np.tile([[0.75, 0.25]], (8, 1))
    labels = np.array([0, 0, 0, 1] * 2)
    assert float(bdl.ece(jnp.log(jnp.asarray(p)), labels)) == pytest.approx(0.0, abs=1e-7)


def test_auroc_is_the_mann_whitney_probability_with_ties_half():
    neg = np.array([0.1, 0.4, 0.4, 0.9])
    pos = np.array([0.4, 0.8, 1.0])
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert float(metrics.auroc(neg, pos)) == pytest.approx(sum(pairs) / len(pairs))
    # entropy as the score: uniform predictions are the most uncertain
    sure = jnp.log(jnp.array([[0.98, 0.01, 0.01]] * 4))
    unsure = jnp.log(jnp.full((3, 3), 1 / 3))
    assert float(bdl.ood_auroc(sure, unsure)) == 1.0
    ent = np.asarray(bdl.predictive_entropy(unsure))
    np.testing.assert_allclose(ent, math.log(3), rtol=1e-6)


def test_regression_metrics_and_mixture_predictive():
    means = RNG.normal(size=(6, 10))
    variances = RNG.uniform(0.5, 2.0, size=(6, 10))
    y = RNG.normal(size=10)
    m, v = bdl.gaussian_predictive(jnp.asarray(means), jnp.asarray(variances))
    np.testing.assert_allclose(np.asarray(m), means.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v), (variances + means**2).mean(0) - means.mean(0) ** 2, rtol=1e-4)
    hand = np.mean([0.5 * math.log(2 * math.pi * v_) + 0.5 * (y_ - m_) ** 2 / v_ for m_, v_, y_ in zip(np.asarray(m), np.asarray(v), y)])
    assert float(bdl.gaussian_nll(m, v, y)) == pytest.approx(hand, rel=1e-5)
    assert float(bdl.rmse(m, y)) == pytest.approx(math.sqrt(np.mean((np.asarray(m) - y) ** 2)), rel=1e-5)


def test_reliability_diagram_draws_the_bins_and_names_the_ece():
    lp = jnp.log(jnp.asarray(_probs()))
    ax = bdl.reliability_diagram(lp, LABELS, n_bins=10, label="net")
    assert "ECE" in ax.get_legend().get_texts()[0].get_text()
    n_nonempty = int((np.asarray(metrics.reliability(lp, LABELS, 10)[2]) > 0).sum())
    assert len(ax.lines[1].get_xdata()) == n_nonempty
    matplotlib.pyplot.close("all")

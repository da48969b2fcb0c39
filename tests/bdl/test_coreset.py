"""Coresets (random and greedy k-centre, against a brute-force reference) and the error of
sequential fitting with `FitResult.as_prior` on a non-conjugate model (logistic regression)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.bdl import coreset


def greedy_reference(x, size, first):
    """k-centre by brute force: at each step, every candidate's distance to its nearest chosen
    point, recomputed from scratch in float64; the farthest wins (the lowest index among ties)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    chosen = [first]
    while len(chosen) < size:
        far = [min(np.sqrt(np.sum((x[i] - x[c]) ** 2)) for c in chosen) for i in range(len(x))]
        chosen.append(int(np.argmax(far)))
    return chosen


@pytest.mark.parametrize("n, d, size, first, seed", [(12, 2, 5, 0, 0), (30, 4, 10, 7, 1), (9, 1, 9, 3, 2), (20, 64, 6, 19, 3)])
def test_k_center_matches_brute_force_greedy(n, d, size, first, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    chosen, rest = coreset.k_center(jnp.asarray(x), size, first=first)
    assert chosen.tolist() == greedy_reference(x, size, first)
    assert rest.tolist() == sorted(set(range(n)) - set(chosen.tolist()))


def test_k_center_breaks_ties_at_the_lowest_index_and_flattens_rows():
    grid = np.array(list(itertools.product(range(3), range(3))), np.float32).reshape(9, 1, 2)  # exact ties
    assert coreset.k_center(jnp.asarray(grid), 4)[0].tolist() == greedy_reference(grid, 4, 0) == [0, 8, 2, 6]
    assert coreset.k_center(jnp.asarray(grid), 0)[0].shape == (0,)
    with pytest.raises(ValueError, match="size"):
        coreset.k_center(jnp.asarray(grid), 10)
    with pytest.raises(ValueError, match="first"):
        coreset.k_center(jnp.asarray(grid), 2, first=9)


def test_random_coreset_sizes_disjoint_cover_and_key_determinism():
    seen = set()
    for s in range(20):
        chosen, rest = coreset.random_coreset(jax.random.key(s), 50, 7)
        c, r = chosen.tolist(), rest.tolist()
        assert len(c) == 7 and len(r) == 43 and sorted(c + r) == list(range(50)) and c == sorted(c) and r == sorted(r)
        again = coreset.random_coreset(jax.random.key(s), 50, 7)
        assert again[0].tolist() == c and again[1].tolist() == r
        seen.update(c)
    assert len(seen) > 40  # 20 draws of 7 of 50 reach almost every index
    assert coreset.random_coreset(jax.random.key(0), 5, 5)[1].shape == (0,)
    with pytest.raises(ValueError, match="size"):
        coreset.random_coreset(jax.random.key(0), 5, 6)


def test_split_and_union_keep_rows_together():
    x, y = jnp.arange(10.0).reshape(5, 2), jnp.arange(5)
    (cx, cy), (rx, ry) = coreset.split(coreset.k_center(x, 2), x, y)
    assert cy.tolist() == [0, 4] and ry.tolist() == [1, 2, 3] and np.array_equal(cx[:, 0], 2.0 * cy)
    ux, uy = coreset.union((cx, cy), (rx, ry))
    assert uy.tolist() == [0, 4, 1, 2, 3] and np.array_equal(ux[:, 0], 2.0 * uy)


# ------------------------------------------------------------------ sequential, non-conjugate

D = 3


def logistic(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, 2.0).expand([D]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def data(n, weights):
    rng = np.random.default_rng(5)
    x = np.concatenate([np.ones((n, 1)), rng.normal(size=(n, D - 1))], 1).astype(np.float32)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x @ np.asarray(weights)))).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def moments(res):
    w = res.sample(40_000, seed=9)["w"]
    return w.mean(0), w.std(0)


# (points, true weights, most |mean error| in full-data sds, sd ratio range)
CASES = {
    # 3 batches of 100: measured 0.00-0.06 sd off, sd ratios 1.00-1.01 (two full fits with
    # different seeds differ by up to 0.06 sd and 2% in sd: this error is at the fits' own noise)
    "batches of 100": (300, [0.5, 1.5, -1.0], 0.15, (0.95, 1.05)),
    # 3 batches of 20, a skewed posterior: measured 0.19-0.23 sd off in w[1] and sds 3-17% too
    # small (two seeds), against 0.02-0.05 sd and up to 7% between two full fits: the Gaussian
    # carried between batches loses the skew, and the loss is visible
    "batches of 20": (60, [0.5, 3.0, -2.0], 0.4, (0.75, 1.05)),
}


@pytest.mark.parametrize("case", CASES)
def test_sequential_logistic_regression_is_close_to_the_full_data_fit(case):
    """Fit in 3 batches, each fit's posterior the next one's prior (fullrank), against one
    full-data fullrank fit: the error is measured in full-data posterior sds and sd ratios. Fitting
    the last batch alone (forgetting the earlier batches) is far off, so the check can fail."""
    n, weights, most, (low, high) = CASES[case]
    x, y = data(n, weights)
    fit = lambda model, xs, ys, seed: provi.fit(model, xs, ys, guide="fullrank", steps=3000, progress=False, seed=seed)
    m_full, s_full = moments(fit(logistic, x, y, 0))
    res, b = None, n // 3
    for i in range(3):
        res = fit(logistic if res is None else res.as_prior(), x[b * i : b * (i + 1)], y[b * i : b * (i + 1)], i + 1)
    m_seq, s_seq = moments(res)
    err, ratio = np.abs(m_seq - m_full) / s_full, s_seq / s_full
    assert np.all(err < most) and np.all((low < ratio) & (ratio < high)), (err, ratio)
    m_last, s_last = moments(fit(logistic, x[2 * b :], y[2 * b :], 7))
    assert np.max(np.abs(m_last - m_full) / s_full) > 0.5 and np.all(s_last / s_full > 1.4), (m_last, s_last)

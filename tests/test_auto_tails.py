"""`provi.auto.tails`: the Student-t degrees of freedom a posterior's tails ask for, read off
importance-weighted draws, against exact draws of known Student-t and Gaussian targets."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import provi
from provi.auto.tails import DF_GRID, radial_distances, tail_df

STEP = np.log(DF_GRID[1] / DF_GRID[0])  # the grid's resolution, in log df


def _t_radii(rng, df, d, n):
    """Squared norms of n exact draws of a standard d-dimensional Student-t with `df` degrees of freedom."""
    eps = rng.standard_normal((n, d)) / np.sqrt(rng.chisquare(df, (n, 1)) / df)
    return np.sum(eps**2, axis=1)


@pytest.mark.parametrize("df, d", [(3.0, 2), (5.0, 3), (10.0, 5)])
def test_exact_student_t_draws_give_their_degrees_of_freedom(df, d):
    """Equal weights, 20,000 exact draws: the estimate is within one grid step of the truth."""
    r = _t_radii(np.random.default_rng(0), df, d, 20_000)
    assert abs(np.log(tail_df(r, np.zeros_like(r), d)) - np.log(df)) <= STEP + 1e-9


def test_gaussian_draws_ask_for_no_heavier_tails():
    r = np.sum(np.random.default_rng(1).standard_normal((20_000, 4)) ** 2, axis=1)
    assert tail_df(r, np.zeros_like(r), 4) >= 30


def test_the_weights_carry_the_draws_to_the_target():
    """Draws of a Student-t with 3 df weighted to one with 8 (exact log density ratios): the
    estimate is the target's df (within two grid steps: PSIS smoothing and the proposal's noise),
    not the proposal's."""
    d = 3
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40_000, d)) / np.sqrt(rng.chisquare(3.0, (40_000, 1)) / 3.0)
    target = stats.multivariate_t(np.zeros(d), np.eye(d), df=8.0)
    proposal = stats.multivariate_t(np.zeros(d), np.eye(d), df=3.0)
    log_w = target.logpdf(x) - proposal.logpdf(x)
    r = np.sum(x**2, axis=1)
    assert abs(np.log(tail_df(r, log_w, d)) - np.log(8.0)) <= 2 * STEP + 1e-9
    assert tail_df(r, np.zeros_like(r), d) < 4.5  # unweighted: the proposal's own tails


def _correlated():
    numpyro.sample("x", dist.MultivariateNormal(jnp.array([1.0, -2.0, 0.5]),
                                                jnp.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])))


def test_radial_distances_are_the_gaussians_own_mahalanobis_distances():
    """On a model with real-valued sites only (no constraining Jacobian), log q of each draw is
    -d/2 log(2 pi) - log|L| - log|P| - r/2: r read back from log q equals `radial_distances`."""
    res = provi.fit(_correlated, guide="fullrank", steps=300, progress=False)
    r, log_w = radial_distances(res, 500, seed=3)
    _, log_q = res.draws(500, seed=3)
    L = np.asarray(res.params["guide"]["scale_tril"])
    log_det = np.sum(np.diag(L)) + float(res.consts["log_det_P"])  # the diagonal of scale_tril is log L_ii
    expected = -2.0 * (np.asarray(log_q, np.float64) + 1.5 * np.log(2 * np.pi) + log_det)
    np.testing.assert_allclose(r, expected, rtol=2e-4, atol=2e-4)
    assert np.all(np.isfinite(log_w))

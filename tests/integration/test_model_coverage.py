"""Models NumPyro's NUTS runs that provi must fit too: data-derived sizes, ODE solvers (reverse mode
only), priors whose sampler needs an optional package, NumPy data in `scan`. Each against an exact
oracle (a conjugate posterior, 1-d quadrature, a Kalman smoother) or NUTS reference moments."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.experimental.ode import odeint
from numpyro.contrib.control_flow import scan

import provi


def _quadrature(log_post, grid):
    """Mean and sd of a 1-d density known up to a constant, on a fine grid."""
    lp = np.asarray(log_post(grid), np.float64)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = np.sum(w * grid)
    return mean, np.sqrt(np.sum(w * (grid - mean) ** 2))


def test_sizes_computed_from_data_values():
    def model(groups, y=None):
        n_groups = int(np.max(groups)) + 1  # a Python int from the data's values, as NumPyro allows
        with numpyro.plate("g", n_groups):
            a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        with numpyro.plate("n", len(groups)):
            numpyro.sample("y", dist.Normal(a[groups], 1.0), obs=y)

    g = np.array([0, 1, 2, 0, 1, 2, 2])
    y = np.array([0.1, 1.0, 2.0, 0.3, 1.2, 2.1, 1.9], np.float32)
    res = provi.fit(model, g, y, guide="meanfield", progress=False, seed=1)
    counts = np.bincount(g)
    exact_mean = np.bincount(g, weights=y) / (counts + 1.0)  # conjugate: N(0, 1) prior, unit noise
    exact_sd = 1.0 / np.sqrt(counts + 1.0)
    draws = res.sample(4000)["a"]
    np.testing.assert_allclose(draws.mean(0), exact_mean, atol=0.1 * exact_sd.min())
    np.testing.assert_allclose(draws.std(0), exact_sd, rtol=0.1)
    assert res.predictive(10)["y"].shape == (10, 7)


def test_ode_model_fits_through_reverse_mode():
    t = jnp.linspace(0.0, 2.0, 6)
    y = np.array([1.02, 0.70, 0.47, 0.35, 0.21, 0.16], np.float32)

    def decay(state, time, k):
        return -k * state

    def model(t, y=None):
        k = numpyro.sample("k", dist.LogNormal(0.0, 0.5))
        curve = odeint(decay, jnp.ones(1), t, k)[:, 0]  # a custom_vjp: no forward-mode derivative
        numpyro.sample("y", dist.Normal(curve, 0.05), obs=y)

    res = provi.fit(model, t, y, progress=False)
    assert not any("no mode" in note or "not finite" in note for note in res.stop.notes)  # the Laplace start worked

    def log_post(k):
        curves = np.exp(-np.outer(k, np.asarray(t)))
        lik = -0.5 * np.sum((curves - y) ** 2, axis=1) / 0.05**2
        return lik + np.asarray(dist.LogNormal(0.0, 0.5).log_prob(k), np.float64)

    mean, sd = _quadrature(log_post, np.linspace(0.3, 1.8, 20001))
    summary = res.summary()
    assert abs(summary.loc["k", "mean"] - mean) < 0.1 * sd
    assert abs(summary.loc["k", "sd"] / sd - 1) < 0.1


def test_diffrax_lotka_volterra_fits_through_reverse_mode():
    """A Lotka-Volterra model solved by diffrax (its default adjoint differentiates in reverse mode
    only; `provi.examples.hard.lotka_volterra`): the Laplace start and the fit work, and the
    posterior mean of the two rates is within 0.1 posterior sd of NUTS's, the sd within 10%
    (`tests/data/lotka_volterra_reference.json`: 4 chains of 5,000 draws, float64)."""
    pytest.importorskip("diffrax")
    from provi.examples.hard import lotka_volterra, lotka_volterra_data

    ref = json.loads((Path(__file__).parents[1] / "data" / "lotka_volterra_reference.json").read_text())["sites"]
    res = provi.fit(lotka_volterra, lotka_volterra_data(), progress=False)
    assert not any("no mode" in note or "not finite" in note for note in res.stop.notes)  # the Laplace start worked
    summary = res.summary()
    for site in ("a", "b"):
        mean, sd = ref[site]["mean"], ref[site]["sd"]
        assert abs(summary.loc[site, "mean"] - mean) < 0.1 * sd + 4 * sd / np.sqrt(4000), site  # plus 4 MC errors of the fit's draws
        assert abs(summary.loc[site, "sd"] / sd - 1) < 0.1, site


def test_prior_whose_sampler_needs_an_optional_package():
    prior = dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 1.0), low=0.0)  # samples through betaincinv (tfp)

    def model(y=None):
        s = numpyro.sample("s", prior)
        numpyro.sample("y", dist.Normal(0.0, s), obs=y)

    res = provi.fit(model, y=np.float32(0.7), progress=False)

    def log_post(s):
        return np.asarray(prior.log_prob(s) + dist.Normal(0.0, s).log_prob(0.7), np.float64)

    mean, sd = _quadrature(log_post, np.linspace(1e-4, 200.0, 400001))
    summary = res.summary()
    assert abs(summary.loc["s", "mean"] - mean) < 0.1 * sd


def test_numpy_data_in_a_scan_model():
    T = 5
    y = np.array([0.5, 1.1, 0.4, -0.3, 0.2], np.float32)  # NumPy, not JAX

    def model(y):
        def step(x_prev, y_t):
            x = numpyro.sample("x", dist.Normal(x_prev, 1.0))
            numpyro.sample("y", dist.Normal(x, 1.0), obs=y_t)
            return x, None

        scan(step, jnp.zeros(()), y)

    res = provi.fit(model, y, guide="fullrank", progress=False, seed=2)
    lower = np.tril(np.ones((T, T)))
    prior_cov = lower @ lower.T  # a Gaussian random walk from 0
    post_cov = np.linalg.inv(np.linalg.inv(prior_cov) + np.eye(T))
    post_mean = post_cov @ y
    draws = res.sample(4000)["x"]
    sd = np.sqrt(np.diag(post_cov))
    np.testing.assert_allclose(draws.mean(0), post_mean, atol=0.1 * sd.min())
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)

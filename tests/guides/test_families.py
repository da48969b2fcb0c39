"""Gaussian families and the Gaussian mixtures: normalised, samples match densities; Laplace is exact on a Gaussian model."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.guides import FullRank, GaussianMixture, LowRank, MeanField, ModeMixture, StudentT

FAMILIES = [MeanField(), FullRank(), LowRank(rank=1), GaussianMixture(components=3, spread=1.5), ModeMixture(components=3),
            StudentT(df=8.0), StudentT()]
IDS = [type(f).__name__ for f in FAMILIES]


def _params(family, seed=0):
    p = family.init(jax.random.PRNGKey(seed), 2, jnp.array([0.3, -0.2]), jnp.array([0.8, 0.5]))
    if "scale_tril" in p:  # correlate the components
        p["scale_tril"] = p["scale_tril"] + jnp.array([[0.0, 0.0], [0.4, 0.0]])
    if "log_weights" in p:  # unequal, well-separated components
        p["log_weights"] = jnp.log(jnp.array([0.15, 0.25, 0.6]))
        p["loc"] = jnp.array([[-2.5, 0.0], [0.5, 2.0], [1.5, -1.5]])
    if "cov_factor" in p:
        p["cov_factor"] = jnp.array([[0.5], [-0.4]])
    return p


def _grid(lim=7.0, n=281):
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32), (g[1] - g[0]) ** 2


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_normalised_and_samples_match_density(family):
    p = _params(family)
    pts, cell = _grid()
    dens = np.exp(np.asarray(family.log_prob(p, pts), np.float64))
    assert abs(dens.sum() * cell - 1.0) < 5e-3
    n = 20_000
    v, log_q = family.sample(p, jax.random.PRNGKey(7), n)
    np.testing.assert_allclose(log_q, family.log_prob(p, v), atol=1e-3, rtol=1e-4)
    v = np.asarray(v, np.float64)
    x = np.asarray(pts, np.float64)
    for f, g in ((v, x), (v**2, x**2), (v[:, :1] * v[:, 1:], x[:, :1] * x[:, 1:])):
        target = (dens[:, None] * g).sum(0) * cell
        se = f.std(0) / np.sqrt(n)
        assert np.all(np.abs(f.mean(0) - target) < 5 * se + 1e-3), (type(family).__name__, f.mean(0), target, se)
    mean, cov = family.moments(p)
    np.testing.assert_allclose(mean, (dens[:, None] * x).sum(0) * cell, atol=2e-3)
    np.testing.assert_allclose(np.diag(cov), ((dens[:, None] * x**2).sum(0) * cell) - np.asarray(mean) ** 2, atol=5e-3)


def test_mode_mixture_draws_components_by_weight_and_holds_the_weights():
    """Stratified draws: component k gets n w_k draws (to within one); the weights get no gradient."""
    family = ModeMixture(components=3)
    p = _params(family)
    p["scale_tril"] = jnp.broadcast_to(jnp.diag(jnp.full((2,), -4.0)), (3, 2, 2))  # narrow: each draw is nearest its own centre
    n = 1000
    v, _ = family.sample(p, jax.random.PRNGKey(3), n)
    nearest = np.argmin(((np.asarray(v)[:, None] - np.asarray(p["loc"])[None]) ** 2).sum(-1), 1)
    counts = np.bincount(nearest, minlength=3)
    assert np.all(np.abs(counts - n * np.array([0.15, 0.25, 0.6])) <= 1), counts
    g = jax.grad(lambda q: family.log_prob(q, v).sum() + family.sample(q, jax.random.PRNGKey(4), 8)[1].sum())(p)
    assert np.all(np.asarray(g["log_weights"]) == 0.0) and np.any(np.asarray(g["loc"]) != 0.0)


def student_target():
    numpyro.sample("x", dist.MultivariateStudentT(4.0, jnp.array([1.0, -1.0]), jnp.array([[1.0, 0.0], [0.8, 0.6]])))


def test_student_t_learns_the_degrees_of_freedom_of_a_student_t_posterior():
    """The family holds the target, so the KL optimum is the target itself: df 4 (reparameterized
    through JAX's implicit gamma gradient), and importance weights near constant."""
    res = provi.fit(student_target, guide=StudentT(), progress=False)
    assert abs(float(jnp.exp(res.params["guide"]["log_df"])) - 4.0) < 0.5
    assert res.diagnostics().khat < 0.3


def _gaussian_model(X, y):
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Normal(X @ beta, 0.5), obs=y)


def test_laplace_is_exact_on_a_gaussian_model():
    """Conjugate linear regression: the posterior is N(m, S) with S = (X'X/s^2 + I/t^2)^-1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) + np.array([0.0, 3.0, 0.0])  # correlated posterior
    y = X @ np.array([1.0, -0.5, 0.3]) + 0.5 * rng.normal(size=30)
    S = np.linalg.inv(X.T @ X / 0.25 + np.eye(3) / 4.0)
    m = S @ X.T @ y / 0.25
    res = provi.fit(_gaussian_model, jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32), guide="laplace", progress=False)
    mean, cov = res.guide.moments(res.params["guide"], res.consts)
    np.testing.assert_allclose(mean, m, atol=1e-4 * (1 + np.abs(m)).max())
    np.testing.assert_allclose(cov, S, atol=1e-3 * np.abs(S).max())
    assert res.stop.steps == 0

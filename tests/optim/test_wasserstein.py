"""Forward-backward Gaussian VI, Bures-Wasserstein SGD (and natural-gradient VI's fits): the JKO step against its closed form,
the Hessian read off the ELBO's gradient against the exact Hessian (in standard errors), and fits
against exact Gaussian targets and a converged full-rank ELBO fit."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import provi
from provi.optim import bw_sgd, fb_gvi, hessian_from_tril, jko_entropy, natgrad

MU = jnp.array([1.0, -2.0, 0.5])
COV = jnp.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 0.5]])


def gaussian():
    numpyro.sample("x", dist.MultivariateNormal(MU, COV))


def test_jko_step_inverts_the_forward_entropy_step():
    """T = jko_entropy(S, h) is the implicit (backward) step: S = (I - h T^-1) T (I - h T^-1)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    S = A @ A.T + 0.1 * np.eye(5)
    for h in (0.01, 0.3, 2.0):
        T = np.asarray(jko_entropy(jnp.asarray(S), h))
        M = np.eye(5) - h * np.linalg.inv(T)
        np.testing.assert_allclose(M @ T @ M, S, rtol=1e-4, atol=1e-4)
        assert np.all(np.linalg.eigvalsh(T) > 0)


def test_symmetric_hessian_is_recovered_from_the_lower_triangle_of_h_l():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6))
    H = A + A.T
    L = np.tril(rng.normal(size=(6, 6)), -1) + np.diag(rng.uniform(0.3, 2.0, 6))
    np.testing.assert_allclose(np.asarray(hessian_from_tril(jnp.asarray(np.tril(H @ L)), jnp.asarray(L))), H, rtol=1e-4, atol=1e-4)


def test_hessian_from_one_particle_gradient_is_unbiased():
    """For the Gaussian target V = -log N(x; MU, COV), the Stein estimate that fb_gvi reads off
    each single-particle ELBO gradient averages to E[hess V] = COV^-1 (prior start: no whitening)."""
    alg = provi.setup(gaussian, guide="fullrank", init="prior")
    state = alg.init(jax.random.PRNGKey(0))
    raw = state.params["guide"]["scale_tril"] + jnp.array([[0.3, 0.0, 0.0], [0.2, -0.1, 0.0], [-0.4, 0.5, 0.2]])
    params = {**state.params, "guide": {**state.params["guide"], "scale_tril": raw}}
    L = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))

    def estimate(key):
        g = jax.grad(lambda p: alg.loss(p, state.consts, key)[0])(params)["guide"]["scale_tril"]
        B = jnp.tril(g, -1) + jnp.diag(jnp.diag(g) / jnp.diag(L)) + jnp.diag(1.0 / jnp.diag(L))
        return hessian_from_tril(B, L)

    draws = np.asarray(jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.PRNGKey(1), 20_000)))
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    exact = np.linalg.inv(np.asarray(COV))
    assert np.all(np.abs(mean - exact) < 4 * se + 1e-4), (mean, exact, se)


@pytest.mark.parametrize("optimizer", [fb_gvi(0.1), bw_sgd(0.1), fb_gvi(lambda t: 0.3 / (1.0 + t / 100.0)), natgrad(0.1),
                                       natgrad(lambda t: 0.5 / (1.0 + t / 50.0))],
                         ids=["fb_gvi", "bw_sgd", "fb_gvi_schedule", "natgrad", "natgrad_schedule"])
def test_converges_to_a_gaussian_target_from_the_prior_start(optimizer):
    res = provi.fit(gaussian, guide="fullrank", optimizer=optimizer, objective=provi.ELBO(num_particles=32),
                    steps=1500, init="prior", progress=False)
    draws = res.sample(40_000, seed=1)["x"]
    sd = np.sqrt(np.diag(np.asarray(COV)))
    assert np.all(np.abs(draws.mean(0) - np.asarray(MU)) < 0.05 * sd), draws.mean(0)
    np.testing.assert_allclose(np.cov(draws.T), np.asarray(COV), atol=0.06)


@pytest.mark.parametrize("optimizer", [fb_gvi(0.1), natgrad(0.1)], ids=["fb_gvi", "natgrad"])
def test_diagonal_version_reaches_the_mean_field_optimum(optimizer):
    """Mean-field VI of a Gaussian: exact means, variances 1 / diag(precision)."""
    res = provi.fit(gaussian, guide="meanfield", optimizer=optimizer, objective=provi.ELBO(num_particles=32),
                    steps=1500, init="prior", progress=False)
    draws = res.sample(40_000, seed=1)["x"]
    mf_var = 1 / np.diag(np.linalg.inv(np.asarray(COV)))
    assert np.all(np.abs(draws.mean(0) - np.asarray(MU)) < 0.05 * np.sqrt(mf_var))
    np.testing.assert_allclose(draws.var(0), mf_var, rtol=0.06)


def _gauss_kl(m0, S0, m1, S1):
    S1i = np.linalg.inv(S1)
    return 0.5 * (np.trace(S1i @ S0) + (m1 - m0) @ S1i @ (m1 - m0) - len(m0) + np.log(np.linalg.det(S1) / np.linalg.det(S0)))


def _logreg():
    rng = np.random.default_rng(0)
    N, D = 200, 4
    X = rng.normal(size=(N, D)).astype(np.float32)
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ np.array([1.0, -1.0, 0.5, 0.0])))).astype(np.float32)

    def logreg(X, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([D]).to_event(1))
        with numpyro.plate("n", N):
            numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

    return logreg, X, y


def _moments(res):
    d = res.sample(200_000, seed=1)["w"]
    return d.mean(0), np.cov(d.T)


@pytest.fixture(scope="module")
def logreg_optimum():
    """A long, converged Adam fit of the full-rank family: its moments."""
    logreg, X, y = _logreg()
    ref = provi.fit(logreg, X, y, guide="fullrank", objective=provi.ELBO(num_particles=16), optimizer=optax.adam(3e-3),
                    steps=20_000, progress=False)
    return _moments(ref)


@pytest.mark.parametrize("objective, steps", [(provi.ELBO(num_particles=16), 1000), (provi.PriceELBO(num_particles=16), 50)],
                         ids=["stein_hessian", "price_hessian"])
def test_logistic_regression_reaches_the_full_rank_elbo_optimum(logreg_optimum, objective, steps):
    """KL below 0.01 to a long, converged Adam fit of the same family: with the Hessian read off
    the ELBO's gradient (Stein) in 1,000 steps, with Hessians at the draws (PriceELBO) in 50."""
    logreg, X, y = _logreg()
    res = provi.fit(logreg, X, y, guide="fullrank", objective=objective, optimizer=fb_gvi(0.2 if steps > 100 else 0.5),
                    steps=steps, progress=False)
    assert _gauss_kl(*_moments(res), *logreg_optimum) < 0.01


def test_clear_errors():
    with pytest.raises(ValueError, match="step_size"):
        fb_gvi(0.0)
    with pytest.raises(ValueError, match="schedule"):
        bw_sgd(-1.0)

    def with_param():
        s = numpyro.param("s", 1.0)
        numpyro.sample("x", dist.Normal(0.0, s))

    with pytest.raises(ValueError, match="step_size"):
        natgrad(1.5)
    for make in (fb_gvi, natgrad):  # params need an optax transformation (others=); only Gaussian families
        with pytest.raises(ValueError, match=r"numpyro.param.*others=optax.adam"):
            provi.fit(with_param, guide="fullrank", optimizer=make(), steps=2, init="prior", progress=False)
        with pytest.raises(ValueError, match="fullrank"):
            provi.fit(gaussian, guide="lowrank", optimizer=make(), steps=2, init="prior", progress=False)

"""provi.nn.bayesian_module: an equinox network's weights as latent sites, fitted by provi.fit,
against the conjugate posterior of Bayesian linear regression."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi

RNG = np.random.default_rng(1)
N, D, NOISE = 60, 3, 0.5
X = RNG.normal(size=(N, D)).astype(np.float32)
Y = (X @ np.array([1.0, -1.0, 0.5]) + 0.3 + NOISE * RNG.normal(size=N)).astype(np.float32)
NET = eqx.nn.Linear(D, 1, key=jax.random.key(0))


def model(x, y, batch=None):
    net = provi.nn.bayesian_module("net", NET, prior=dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        numpyro.sample("y", dist.Normal(jax.vmap(net)(x[idx])[:, 0], NOISE), obs=y[idx])


def exact_posterior():
    A = np.concatenate([X, np.ones((N, 1))], axis=1)  # weights then bias
    precision = A.T @ A / NOISE**2 + np.eye(D + 1)
    cov = np.linalg.inv(precision)
    return cov @ A.T @ Y / NOISE**2, cov


def _flat(draws):
    return np.concatenate([draws["net.weight"].reshape(-1, D), draws["net.bias"].reshape(-1, 1)], axis=1)


def test_fullrank_fit_recovers_the_conjugate_posterior():
    res = provi.fit(model, jnp.asarray(X), jnp.asarray(Y), guide="fullrank", steps=4000, progress=False)
    draws = _flat(res.sample(20_000, seed=1))
    mean, cov = exact_posterior()
    sd = np.sqrt(np.diag(cov))
    # the fitted Gaussian is the posterior up to optimisation noise: means within 0.05 sd, sds within 5%
    assert np.all(np.abs(draws.mean(0) - mean) < 0.05 * sd + 4 * sd / np.sqrt(20_000)), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.05)


def test_meanfield_fit_with_minibatches_matches_the_meanfield_optimum():
    """Mean-field VI of a Gaussian posterior: exact means, variances 1 / diag(precision)."""
    res = provi.fit(model, jnp.asarray(X), jnp.asarray(Y), batch=20, guide="meanfield", steps=8000, progress=False)
    draws = _flat(res.sample(20_000, seed=2))
    mean, cov = exact_posterior()
    mf_sd = 1 / np.sqrt(np.diag(np.linalg.inv(cov)))
    assert np.all(np.abs(draws.mean(0) - mean) < 0.1 * mf_sd + 4 * mf_sd / np.sqrt(20_000)), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.std(0), mf_sd, rtol=0.1)


def test_priors_by_site_and_clear_errors():
    seen = {}

    def by_fan_in(site, w):
        seen[site] = w.shape
        return dist.Normal(0.0, 1.0 / np.sqrt(w.shape[-1]))

    mlp = eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(0))
    tr = numpyro.handlers.trace(numpyro.handlers.seed(lambda: provi.nn.bayesian_module("mlp", mlp, prior=by_fan_in), 0)).get_trace()
    assert set(tr) == {"mlp.layers.0.weight", "mlp.layers.0.bias", "mlp.layers.1.weight", "mlp.layers.1.bias"}
    assert tr["mlp.layers.0.weight"]["value"].shape == (4, 2) and seen["mlp.layers.1.weight"] == (1, 4)
    assert tr["mlp.layers.0.weight"]["fn"].event_shape == (4, 2)
    with pytest.raises(ValueError, match="mlp.layers.0.weight"):
        numpyro.handlers.seed(lambda: provi.nn.bayesian_module("mlp", mlp, prior=dist.Normal(jnp.zeros(3), 1.0)), 0)()
    with pytest.raises(TypeError, match="equinox Module"):
        provi.nn.bayesian_module("f", lambda x: x)

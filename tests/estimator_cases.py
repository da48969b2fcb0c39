"""Shared helpers of the estimator tests: a one-site guide run through provi's real loss driver,
and a table of (estimator, distribution, test function, exact expectation) cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import i0e, i1e

import provi
from provi.distributions import OneHotCategorical
from provi.estimators import (
    MVD, Enumerate, ImplicitReparam, RejectionReparam, Reinforce, Reparam,
)


def one_site_loss(make_dist, theta0, est, f, particles=1, objective=None):
    """(loss, params): provi's loss for E_{z ~ make_dist(theta)}[f(z)] with one guide site `z`."""
    theta0 = jnp.asarray(theta0, dtype=jnp.float32)

    def model():
        numpyro.sample("z", make_dist(theta0))

    def guide():
        th = numpyro.param("theta", theta0)
        numpyro.sample("z", make_dist(th), infer={"estimator": est})

    if objective is None:

        @provi.objective
        def objective(model, guide):
            z, _ = provi.sim(guide, n=particles)
            return jnp.mean(f(z["z"]))

    alg = provi.setup(model, guide=guide, objective=objective)
    params = alg.init(jax.random.PRNGKey(0)).params  # a NumPyro guide's initial values, with estimator states
    return (lambda p, consts, key, data: alg.loss(p, consts, key)), params, alg.data


def gradient_draws(make_dist, theta0, est, f, n=4000, seed=0, particles=1, objective=None, state=None):
    """(n, dim) single-evaluation gradient estimates of E[f] w.r.t. theta (vmapped over keys)."""
    loss, params, data = one_site_loss(make_dist, theta0, est, f, particles, objective)
    if state is not None:
        params["estimators"] = state

    def one(k):
        return -jax.grad(lambda p: loss(p, {}, k, data)[0])(params)["guide"]["theta"]

    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return np.asarray(jax.jit(jax.vmap(one))(keys)).reshape(n, -1)


def assert_unbiased(draws, exact, k=4.5, rel=2e-3):
    draws = np.asarray(draws, np.float64)
    exact = np.asarray(exact, np.float64).reshape(-1)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(draws.shape[0])
    tol = k * se + rel * (1 + np.abs(exact))
    assert np.all(np.isfinite(mean)), mean
    assert np.all(np.abs(mean - exact) <= tol), f"mean {mean}, exact {exact}, tol {tol} (SE {se})"


def exhaustive(log_pmf, support, f):
    """E[f] by exhaustive enumeration of a finite support."""
    s = jnp.asarray(support)
    return jnp.sum(jnp.exp(log_pmf(s)) * f(s))


sig = jax.nn.sigmoid
cube = lambda z: z**3 - 2 * z  # noqa: E731
tab = jnp.array([1.5, -2.0, 0.5, 3.0, -1.0])


# name -> (make_dist(theta), theta0, f, exact E[f] as a function of theta)
DISTS = {
    "Normal": (
        lambda t: dist.Normal(t[0], jnp.exp(t[1])), [0.3, -0.2],
        lambda z: z**2 + z, lambda t: t[0] ** 2 + jnp.exp(2 * t[1]) + t[0],
    ),
    "Gamma": (
        lambda t: dist.Gamma(jnp.exp(t[0]), jnp.exp(t[1])), [0.4, 0.1],
        lambda z: z**2, lambda t: jnp.exp(t[0]) * (jnp.exp(t[0]) + 1) / jnp.exp(2 * t[1]),
    ),
    "GammaSmallShape": (
        lambda t: dist.Gamma(jnp.exp(t[0]), 1.0), [-0.7],
        lambda z: z, lambda t: jnp.exp(t[0]),
    ),
    "Beta": (
        lambda t: dist.Beta(jnp.exp(t[0]), jnp.exp(t[1])), [0.5, 0.2],
        lambda z: z**2, lambda t: (lambda a, b: a * (a + 1) / ((a + b) * (a + b + 1)))(jnp.exp(t[0]), jnp.exp(t[1])),
    ),
    "Dirichlet": (
        lambda t: dist.Dirichlet(jnp.exp(t)), [0.3, -0.2, 0.6],
        lambda z: z @ jnp.array([1.0, -2.0, 0.5]), lambda t: jnp.exp(t) @ jnp.array([1.0, -2.0, 0.5]) / jnp.sum(jnp.exp(t)),
    ),
    "StudentT": (
        lambda t: dist.StudentT(6.0 + jnp.exp(t[0]), t[1], jnp.exp(t[2])), [0.1, 0.4, -0.3],
        lambda z: z**2, lambda t: jnp.exp(2 * t[2]) * (6 + jnp.exp(t[0])) / (4 + jnp.exp(t[0])) + t[1] ** 2,
    ),
    "VonMises": (
        lambda t: dist.VonMises(t[0], jnp.exp(t[1])), [0.4, 0.5],
        lambda z: jnp.cos(z) + 2 * jnp.sin(z),
        lambda t: i1e(jnp.exp(t[1])) / i0e(jnp.exp(t[1])) * (jnp.cos(t[0]) + 2 * jnp.sin(t[0])),
    ),
    "Bernoulli": (
        lambda t: dist.Bernoulli(logits=t[0]), [0.3],
        lambda z: jnp.where(z > 0, 2.0, -1.5), lambda t: sig(t[0]) * 2.0 - (1 - sig(t[0])) * 1.5,
    ),
    "Categorical": (
        lambda t: dist.Categorical(logits=t), [0.2, -0.5, 0.1, 0.7, 0.0],
        lambda z: tab[z], lambda t: jax.nn.softmax(t) @ tab,
    ),
    "Binomial": (
        lambda t: dist.Binomial(4, logits=t[0]), [-0.3],
        lambda z: cube(z.astype(jnp.float32)),
        lambda t: exhaustive(lambda s: dist.Binomial(4, logits=t[0]).log_prob(s), jnp.arange(5), lambda s: cube(s * 1.0)),
    ),
    "Poisson": (
        lambda t: dist.Poisson(jnp.exp(t[0])), [0.5],
        lambda z: z**2 * 1.0, lambda t: jnp.exp(t[0]) + jnp.exp(2 * t[0]),
    ),
    "Geometric": (
        lambda t: dist.Geometric(probs=sig(t[0])), [0.2],
        lambda z: 1.0 * z**2, lambda t: (lambda p: (1 - p) * (2 - p) / p**2)(sig(t[0])),
    ),
    "OneHotCategorical": (
        lambda t: OneHotCategorical(logits=t), [0.2, -0.5, 0.1, 0.7, 0.0],
        lambda z: z @ tab, lambda t: jax.nn.softmax(t) @ tab,
    ),
    # two one-hot coordinates that interact in f: the oracle enumerates all 3 x 3 joint values
    "OneHotBatch": (
        lambda t: OneHotCategorical(logits=t.reshape(2, 3)), [0.3, -0.4, 1.0, -0.2, 0.5, 0.1],
        lambda z: (z[..., 0, :] @ tab[:3] - z[..., 1, :] @ tab[2:]) ** 2,
        lambda t: exhaustive(
            lambda s: jnp.sum(OneHotCategorical(logits=t.reshape(2, 3)).log_prob(s), -1),
            jnp.stack([jnp.stack([jnp.eye(3)[i], jnp.eye(3)[j]]) for i in range(3) for j in range(3)]),
            lambda s: (s[:, 0] @ tab[:3] - s[:, 1] @ tab[2:]) ** 2,
        ),
    ),
    # a batched site whose coordinates interact in f: the oracle enumerates all 2^3 joint values
    "BernoulliBatch": (
        lambda t: dist.Bernoulli(logits=t), [0.3, -0.4, 1.0],
        lambda z: (jnp.sum(z * jnp.array([1.0, 2.0, -1.0]), -1) - 0.5) ** 2,
        lambda t: exhaustive(
            lambda s: jnp.sum(dist.Bernoulli(logits=t).log_prob(s), -1),
            jnp.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]),
            lambda s: (s @ jnp.array([1.0, 2.0, -1.0]) - 0.5) ** 2,
        ),
    ),
}

# estimator instance -> the distributions it is tested on
CASES = {
    "Reparam": (Reparam(), ["Normal", "Gamma", "Beta", "Dirichlet", "StudentT"]),
    "ImplicitReparam": (ImplicitReparam(), ["Gamma", "GammaSmallShape", "Beta", "Dirichlet", "StudentT", "VonMises"]),
    "RejectionReparam": (RejectionReparam(), ["Gamma", "GammaSmallShape", "Beta", "Dirichlet"]),
    "RejectionReparamNoBoost": (RejectionReparam(boost=0), ["Gamma"]),
    "Reinforce": (
        Reinforce(), ["Normal", "Gamma", "Bernoulli", "Categorical", "Poisson", "Geometric", "BernoulliBatch", "OneHotBatch"]
    ),
    "Enumerate": (Enumerate(), ["Bernoulli", "Categorical", "Binomial", "BernoulliBatch", "OneHotCategorical", "OneHotBatch"]),
    "MVD": (MVD(), ["Bernoulli", "Categorical", "Poisson", "Geometric", "Normal", "BernoulliBatch"]),
}

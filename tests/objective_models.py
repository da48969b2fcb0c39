"""Conjugate models with exact oracles, and a harness that evaluates objectives outside `fit`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

import provi

X = jnp.array([0.3, -1.2, 2.0, 0.7])
THETA = 0.5


def model(x):
    """mu ~ Normal(theta, 1); x_i ~ Normal(mu, 1); theta is a model parameter."""
    theta = numpyro.param("theta", THETA)
    mu = numpyro.sample("mu", dist.Normal(theta, 1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def posterior(x=X, theta=THETA):
    """Exact posterior mean and sd of mu."""
    prec = 1.0 + x.shape[0]
    return (theta + jnp.sum(x)) / prec, 1.0 / jnp.sqrt(prec)


def log_evidence(x=X, theta=THETA):
    """Exact log p(x): x ~ MVN(theta 1, I + 1 1^T)."""
    n = x.shape[0]
    cov = jnp.eye(n) + jnp.ones((n, n))
    return jax.scipy.stats.multivariate_normal.logpdf(x, theta * jnp.ones(n), cov)


def exact_elbo(a, s, x=X, theta=THETA):
    """E_q[log p(x, mu) - log q(mu)] for q = Normal(a, s)."""
    m, sd = posterior(x, theta)
    # log p(x, mu) = log p(x) + log N(mu; m, sd); E_q log N(mu; m, sd) and the entropy of q
    e_log_post = -0.5 * jnp.log(2 * jnp.pi * sd**2) - ((a - m) ** 2 + s**2) / (2 * sd**2)
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
    return log_evidence(x, theta) + e_log_post + entropy


def make_guide(a, s, estimator=None):
    """q(mu) = Normal(loc, scale) starting at (a, s)."""

    def guide(x):
        loc = numpyro.param("loc", jnp.asarray(a))
        scale = numpyro.param("scale", jnp.asarray(s), constraint=constraints.positive)
        infer = {} if estimator is None else {"estimator": estimator}
        numpyro.sample("mu", dist.Normal(loc, scale), infer=infer)

    return guide


def make_aux_guide(a, b, s):
    """A hierarchical guide: u ~ Normal(0, 1) (auxiliary), mu ~ Normal(a + b u, s); q(mu) = Normal(a, sqrt(b^2 + s^2))."""

    def guide(x):
        loc = numpyro.param("loc", jnp.asarray(a))
        slope = numpyro.param("slope", jnp.asarray(b))
        scale = numpyro.param("scale", jnp.asarray(s), constraint=constraints.positive)
        u = numpyro.sample("u", dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})
        numpyro.sample("mu", dist.Normal(loc + slope * u, scale))

    return guide


class Harness:
    """An objective's loss, value and gradient at a guide's initial parameters, keyed by seed."""

    def __init__(self, guide, objective, mdl=model, args=(X,), kwargs=None):
        self.alg = provi.setup(mdl, *args, guide=guide, objective=objective, **(kwargs or {}))
        self.model, self.guide, self.data = self.alg.model, self.alg.guide, self.alg.data
        self.params = {"model": self.model.init_params(), "guide": self.guide.init_params()}
        self.loss = lambda params, consts, key, data: self.alg.loss(params, consts, key)

        def value_and_grad(params, key):
            return self.alg.objective_and_grad(params, key)  # gradient of the objective (maximised)

        self.value_and_grad = jax.jit(value_and_grad)
        self.many = jax.jit(jax.vmap(value_and_grad, in_axes=(None, 0)))

    def run(self, reps: int, seed: int = 0):
        """`reps` independent estimates: (values (reps,), gradients pytree with a leading reps axis)."""
        keys = jax.random.split(jax.random.PRNGKey(seed), reps)
        values, grads = self.many(self.params, keys)
        return np.asarray(values), jax.tree.map(np.asarray, grads)


def mean_se(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(), x.std(ddof=1) / np.sqrt(len(x))

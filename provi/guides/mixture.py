"""Mixtures of K Gaussians: `GaussianMixture` (full-rank components, equal weights, fully
reparameterized, trainable), `MeanFieldMixture` (mean-field components, equal weights: the
family a Stein mixture moves, `provi.SteinMixture`) and `ModeMixture` (fixed, unequal weights:
what `guide="auto"` builds over the modes of a multimodal posterior).

`GaussianMixture` and `MeanFieldMixture`:

Draw j of n comes from component (j + r) mod K with r uniform on {0, ..., K-1}: each draw is
marginally a draw from the mixture (so any objective's estimate stays unbiased for any n), the
components are visited in balance (low variance), and each draw is a reparameterized function of
its component's parameters. The weights are fixed at 1/K: learning them needs a score-function or
implicit-reparameterization gradient for the discrete choice, which this family does not attempt;
unequal posterior masses are matched by the components' locations and scales instead.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from provi.core import rand
from provi.distributions import meanfield_mixture_log_prob
from provi.guides.families import Family, _std_normal_logpdf, _tril_logdet, tril_factor

__all__ = ["GaussianMixture", "MeanFieldMixture", "ModeMixture"]


class GaussianMixture(Family):
    """(1/K) sum_k N(loc_k, L_k L_k^T); the components start spread by `spread` scales around `loc`."""

    components: int = 3
    spread: float = 0.5
    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        k = self.components
        offsets = self.spread * scale * rand.normal(key, (k, dim), loc.dtype)
        tril = jnp.broadcast_to(jnp.diag(jnp.log(scale)), (k, dim, dim))
        return {"loc": loc + offsets, "scale_tril": tril}

    def sample(self, params, key, n):
        loc, L = params["loc"], jax.vmap(tril_factor)(params["scale_tril"])
        k1, k2 = jax.random.split(key)
        v = _draw(loc, L, _balanced(k1, n, loc.shape[0]), k2)
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        k = params["loc"].shape[0]
        return (jax.nn.logsumexp(_component_log_probs(params, v), 0) - math.log(k)).reshape(v.shape[:-1])

    def moments(self, params):
        k = params["loc"].shape[0]
        return _moments(params, jnp.full((k,), 1.0 / k, params["loc"].dtype))


class MeanFieldMixture(Family):
    """(1/K) sum_k N(loc_k, diag(exp(log_scale_k))^2), K = `components`; the components start
    at the start's mean spread by `spread` of its scales, each with the start's scales. Fit it with
    `objective=provi.SteinMixture()` (a Stein mixture: the components repel, so they spread over
    the posterior's modes and shape) or with any ELBO (nothing then keeps the components apart).

    >>> import jax, jax.numpy as jnp
    >>> m = MeanFieldMixture(components=2)
    >>> params = {"loc": jnp.array([[-3.0], [3.0]]), "log_scale": jnp.full((2, 1), -1.0)}
    >>> v, _ = m.sample(params, jax.random.PRNGKey(0), 1000)
    >>> round(float((v > 0).mean()), 2)  # draws in balance: half from each component
    0.5
    """

    components: int = 8
    spread: float = 1.0
    is_point: ClassVar[bool] = False

    def __check_init__(self):
        if int(self.components) < 1:
            raise ValueError(f"MeanFieldMixture needs at least one component, got components={self.components}")

    def init(self, key, dim, loc, scale):
        k = self.components
        offsets = self.spread * scale * rand.normal(key, (k, dim), loc.dtype)
        return {"loc": loc + offsets, "log_scale": jnp.broadcast_to(jnp.log(scale), (k, dim))}

    def component_params(self, params):
        return params["loc"], params["log_scale"]

    def sample(self, params, key, n):
        loc, log_scale = params["loc"], params["log_scale"]
        k1, k2 = jax.random.split(key)
        comp = _balanced(k1, n, loc.shape[0])
        v = loc[comp] + jnp.exp(log_scale[comp]) * rand.normal(k2, (n, loc.shape[1]), loc.dtype)
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        return meanfield_mixture_log_prob(params["loc"], params["log_scale"], v)

    def moments(self, params):
        loc = params["loc"]
        covs = jax.vmap(jnp.diag)(jnp.exp(2 * params["log_scale"]))
        return _mixture_moments(loc, covs, jnp.full((loc.shape[0],), 1.0 / loc.shape[0], loc.dtype))


class ModeMixture(Family):
    """sum_k w_k N(loc_k, L_k L_k^T) with fixed weights w = softmax(`log_weights`): one component per
    mode of a multimodal posterior, weighted by the mass found there (`provi.auto`).

    The weights are held, not learned: `log_weights` enter the density through `stop_gradient`,
    as the component a draw comes from carries no reparameterized gradient. Draw j of n comes
    from the component whose cumulative weight first exceeds (j + r) / n, r uniform on [0, 1)
    (stratified: each draw is marginally from the mixture, and the components are visited in
    proportion to their weights). Built with equal weights by `init`.

        >>> import jax, jax.numpy as jnp
        >>> m = ModeMixture(components=2)
        >>> params = {"loc": jnp.array([[-2.0], [2.0]]), "scale_tril": jnp.full((2, 1, 1), -2.0),
        ...           "log_weights": jnp.log(jnp.array([0.25, 0.75]))}
        >>> v, _ = m.sample(params, jax.random.PRNGKey(0), 1000)
        >>> round(float((v > 0).mean()), 2)
        0.75
    """

    components: int = 2
    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        k = self.components
        offsets = 0.5 * scale * rand.normal(key, (k, dim), loc.dtype)
        tril = jnp.broadcast_to(jnp.diag(jnp.log(scale)), (k, dim, dim))
        return {"loc": loc + offsets, "scale_tril": tril, "log_weights": jnp.zeros((k,), loc.dtype)}

    def weights(self, params):
        return jax.nn.softmax(jax.lax.stop_gradient(params["log_weights"]))

    def sample(self, params, key, n):
        loc, L = params["loc"], jax.vmap(tril_factor)(params["scale_tril"])
        k1, k2 = jax.random.split(key)
        u = (jnp.arange(n) + jax.random.uniform(k1, (), loc.dtype)) / n
        comp = jnp.minimum(jnp.searchsorted(jnp.cumsum(self.weights(params)), u, side="right"), loc.shape[0] - 1)
        v = _draw(loc, L, comp, k2)
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        log_w = jnp.log(self.weights(params))
        return jax.nn.logsumexp(_component_log_probs(params, v) + log_w[:, None], 0).reshape(v.shape[:-1])

    def moments(self, params):
        return _moments(params, self.weights(params))


def _draw(loc, L, comp, key):
    """Draws from components `comp` (n,) of the Gaussians `loc` (K, D), `L` (K, D, D)."""
    eps = rand.normal(key, (comp.shape[0], loc.shape[1]), loc.dtype)
    return loc[comp] + jnp.einsum("nij,nj->ni", L[comp], eps)


def _component_log_probs(params, v):
    """log N(v; loc_k, L_k L_k^T) of every component k at the points `v` (..., D), as (K, N)."""
    loc, L = params["loc"], jax.vmap(tril_factor)(params["scale_tril"])
    flat = v.reshape(-1, loc.shape[1])

    def one(m, l, logdet):
        eps = jax.scipy.linalg.solve_triangular(l, (flat - m).T, lower=True).T
        return _std_normal_logpdf(eps) - logdet

    return jax.vmap(one)(loc, L, _tril_logdet(params["scale_tril"]))


def _moments(params, w):
    """Mean and covariance of the full-rank mixture with weights `w` (K,)."""
    L = jax.vmap(tril_factor)(params["scale_tril"])
    return _mixture_moments(params["loc"], L @ jnp.swapaxes(L, -1, -2), w)


def _mixture_moments(loc, covs, w):
    """Mean and covariance of sum_k w_k N(loc_k, covs_k): loc (K, D), covs (K, D, D), w (K,)."""
    mean = w @ loc
    dev = loc - mean
    return mean, jnp.einsum("k,kij->ij", w, covs) + (dev * w[:, None]).T @ dev


def _balanced(key, n: int, k: int) -> jax.Array:
    """The component of each of `n` draws from an equal-weight mixture of `k`: draw j from
    component (j + r) mod k, r uniform on {0, ..., k-1} (see the module's docstring)."""
    return (jnp.arange(n) + jax.random.randint(key, (), 0, k)) % k

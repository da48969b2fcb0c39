"""A mixture of K full-rank Gaussians with equal weights, fully reparameterized.

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
from provi.guides.families import Family, _std_normal_logpdf, _tril_logdet, tril_factor

__all__ = ["GaussianMixture"]


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
        k = loc.shape[0]
        k1, k2 = jax.random.split(key)
        comp = (jnp.arange(n) + jax.random.randint(k1, (), 0, k)) % k
        eps = rand.normal(k2, (n, loc.shape[1]), loc.dtype)
        v = loc[comp] + jnp.einsum("nij,nj->ni", L[comp], eps)
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        loc, L = params["loc"], jax.vmap(tril_factor)(params["scale_tril"])
        k, d = loc.shape
        flat = v.reshape(-1, d)

        def one(m, l, logdet):
            eps = jax.scipy.linalg.solve_triangular(l, (flat - m).T, lower=True).T
            return _std_normal_logpdf(eps) - logdet

        comps = jax.vmap(one)(loc, L, _tril_logdet(params["scale_tril"]))  # (K, N)
        return (jax.nn.logsumexp(comps, 0) - math.log(k)).reshape(v.shape[:-1])

    def moments(self, params):
        loc, L = params["loc"], jax.vmap(tril_factor)(params["scale_tril"])
        mean = jnp.mean(loc, 0)
        dev = loc - mean
        cov = jnp.mean(L @ jnp.swapaxes(L, -1, -2), 0) + dev.T @ dev / loc.shape[0]
        return mean, cov

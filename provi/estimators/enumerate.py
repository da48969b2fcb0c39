"""`Enumerate`: exact sums over each coordinate's finite support."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from provi.core.model import base_distribution
from provi.estimators.base import Estimator

__all__ = ["Enumerate", "support_size"]

sg = jax.lax.stop_gradient


def support_size(fn) -> int | None:
    """The number of values in a scalar-event distribution's finite support, or None."""
    b = base_distribution(fn)
    if not b.has_enumerate_support or b.event_shape != ():
        return None
    try:
        return int(jnp.size(b.enumerate_support(expand=False)))
    except Exception:  # a support whose size is not concrete (e.g. a traced Binomial total count)
        return None


@dataclasses.dataclass(frozen=True)
class Enumerate(Estimator):
    """Exact, vectorised sums over a finite support: Bernoulli, Categorical, Binomial, DiscreteUniform, ...

    For each particle and each scalar coordinate of the site, the gradient through that
    coordinate's distribution is the exact sum over its K support values,
    sum_k ∇q(k) · objective(coordinate = k), with the site's other coordinates and all other
    particles at their draws and later guide sites redrawn with the same randomness (a
    Rao-Blackwellised, unbiased estimate; exact when the site is one scalar draw and one particle).
    It costs K evaluations of the objective per coordinate per particle (vectorised with vmap), not
    K^coordinates; several enumerated sites cost the sum of theirs, not the product.
    `max_support` refuses larger supports (use MVD or Reinforce there).
    """

    max_support: int = 64
    pathwise = False
    branching = True

    def applies(self, fn) -> bool:
        k = support_size(fn)
        return k is not None and k <= self.max_support

    def why_not(self, fn) -> str:
        k = support_size(fn)
        if k is None:
            return "its support is not finite and enumerable"
        return f"its support has {k} values, more than max_support={self.max_support}"

    def draw(self, fn, value, key):
        return sg(value), None

    def branches(self, fn, value, key):
        b = base_distribution(fn)
        shape = jnp.shape(value)
        sup = b.enumerate_support(expand=False).reshape(-1).astype(jnp.result_type(value))  # (K,)
        full = jnp.broadcast_to(sup.reshape((-1,) + (1,) * len(shape)), sup.shape + shape)  # (K, *shape)
        lp = jax.vmap(lambda x: jnp.broadcast_to(b.log_prob(x), shape))(full)  # (K, *shape)
        ok = jnp.isfinite(lp)
        w = jnp.where(ok, jnp.exp(jnp.where(ok, lp, 0.0)), 0.0)
        K, M = sup.shape[0], int(jnp.size(value)) if shape else 1
        values = jnp.broadcast_to(full[None], (M,) + full.shape).reshape((M * K,) + shape)
        coords = jnp.repeat(jnp.arange(M), K)
        weights = w.reshape(K, M).T.reshape(-1)
        return values, coords, weights

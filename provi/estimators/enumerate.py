"""`Enumerate`: exact sums over each coordinate's finite support."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from provi.core.trace import base_distribution
from provi.defaults import ENUMERATE_MAX_SUPPORT
from provi.estimators.base import Estimator

__all__ = ["Enumerate", "support_size", "event_size"]

sg = jax.lax.stop_gradient


def support_size(fn) -> int | None:
    """The number of values in a distribution's finite support (per coordinate: per batch element
    of its base distribution, e.g. K for a one-hot categorical), or None."""
    b = base_distribution(fn)
    if not b.has_enumerate_support:
        return None
    try:
        return int(jnp.shape(b.enumerate_support(expand=False))[0])
    except Exception:  # a support whose size is not concrete (e.g. a traced Binomial total count)
        return None


def event_size(fn) -> int:
    """Entries per coordinate of a site's value: the size of its base distribution's event."""
    return math.prod(base_distribution(fn).event_shape)


@dataclasses.dataclass(frozen=True)
class Enumerate(Estimator):
    """Exact, vectorised sums over a finite support: Bernoulli, Categorical, Binomial, DiscreteUniform, ...

    For each particle and each coordinate of the site (a scalar, or one one-hot vector of a
    `provi.distributions.OneHotCategorical`), the gradient through that
    coordinate's distribution is the exact sum over its K support values,
    sum_k ∇q(k) · objective(coordinate = k), with the site's other coordinates and all other
    particles at their draws and later guide sites redrawn with the same randomness (a
    Rao-Blackwellised, unbiased estimate; exact when the site is one scalar draw and one particle).
    It costs K evaluations of the objective per coordinate per particle (vectorised with vmap), not
    K^coordinates; several enumerated sites cost the sum of theirs, not the product.
    `max_support` refuses larger supports (use MVD or Reinforce there).
    """

    max_support: int = ENUMERATE_MAX_SUPPORT
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
        shape, ev = jnp.shape(value), b.event_shape
        batch = shape[: len(shape) - len(ev)]
        sup = b.enumerate_support(expand=False).reshape((-1,) + ev).astype(jnp.result_type(value))  # (K, *ev)
        K, M = sup.shape[0], math.prod(batch)
        full = jnp.broadcast_to(sup.reshape((K,) + (1,) * len(batch) + ev), (K,) + shape)  # (K, *shape)
        lp = jax.vmap(lambda x: jnp.broadcast_to(b.log_prob(x), batch))(full)  # (K, *batch)
        ok = jnp.isfinite(lp)
        w = jnp.where(ok, jnp.exp(jnp.where(ok, lp, 0.0)), 0.0)
        values = jnp.broadcast_to(full[None], (M,) + full.shape).reshape((M * K,) + shape)
        coords = jnp.repeat(jnp.arange(M), K)
        weights = w.reshape(K, M).T.reshape(-1)
        return values, coords, weights

"""Mapping a function over leading particle axes, and counting them."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["vectorise", "vmap_or_call", "batch_ndim"]


def vectorise(fn: Callable, nb: int) -> Callable:
    """vmap `fn` over `nb` leading axes of every argument."""
    for _ in range(nb):
        fn = vmap_or_call(fn)
    return fn


def vmap_or_call(fn: Callable) -> Callable:
    """`jax.vmap(fn)`, except that an axis of length 1 (one particle, the default) is indexed away
    and put back instead: the same values, without the layout copies that XLA's CPU backend makes
    for a batch axis of length 1 around every matrix product."""
    mapped = jax.vmap(fn)

    def call(*args):
        leaves = jax.tree.leaves(args)
        if not leaves or any(jnp.shape(x)[:1] != (1,) for x in leaves):
            return mapped(*args)
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), out)

    return call


def batch_ndim(values: dict, shapes: dict) -> int:
    """How many leading particle axes `values` carries beyond each site's own shape (`shapes`)."""
    name = next(iter(values))
    return jnp.ndim(values[name]) - len(shapes[name])

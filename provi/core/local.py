"""Local reparameterization (Kingma, Salimans & Welling 2015): a model's dense layer asks for the
guide's Gaussian moments of its weights and samples its pre-activations instead of its weights.

A layer asks with `local_moments(site)`, a nameless NumPyro message (traces do not record it):
`None` unless a `LocalMoments` handler holds that site's `(loc, scale)`, so the model stays an
ordinary NumPyro program (NUTS and plain NumPyro runs see the weights as drawn). `LocalMoments` is
installed around a fit's objective evaluation; `per_example_normal` gives independent noise to
every element of every `vmap` around the layer (data points and particles alike).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from numpyro.primitives import Messenger, apply_stack

__all__ = ["LOCAL_MOMENTS", "local_moments", "LocalMoments", "per_example_normal"]

LOCAL_MOMENTS = "provi_local_moments"  # the message type


def _none():
    return None


def local_moments(site: str):
    """`(loc, scale)` of the guide's Gaussian over weight site `site`, or None where no fit's
    objective is being evaluated with `LocalReparam` on it.

        >>> local_moments("net.weight") is None
        True
    """
    msg = {"type": LOCAL_MOMENTS, "site": site, "fn": _none, "args": (), "kwargs": {}, "value": None}
    return apply_stack(msg)["value"]


class LocalMoments(Messenger):
    """Answer `local_moments(site)` from `moments` ({site: (loc, scale)}); record in `asked` every
    site a layer asked for.

        >>> h = LocalMoments({"w": (0.0, 1.0)})
        >>> with h:
        ...     local_moments("w"), local_moments("v")
        ((0.0, 1.0), None)
        >>> sorted(h.asked)
        ['v', 'w']
    """

    def __init__(self, moments: dict, fn=None):
        self.moments = moments
        self.asked = set()
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != LOCAL_MOMENTS:
            return
        self.asked.add(msg["site"])
        if msg["site"] in self.moments:
            msg["value"] = self.moments[msg["site"]]


def per_example_normal(key, shape: tuple, dtype, *witnesses) -> jax.Array:
    """Standard normal noise of `shape`, independent across every `vmap` axis that batches `key`
    or any of `witnesses` (arrays whose values are unused: they only say which axes are batched).

    Unbatched it is `jax.random.normal(key, shape)`; under `vmap` over data points (a witness
    batched) and over particles (another witness batched), each element gets its own draw.

        >>> import jax
        >>> x = jax.numpy.ones((4, 2))
        >>> e = jax.vmap(lambda xi: per_example_normal(jax.random.key(0), (3,), x.dtype, xi))(x)
        >>> e.shape, bool((e[0] != e[1]).all())
        ((4, 3), True)
    """
    witnesses = tuple(jax.lax.stop_gradient(jnp.asarray(w)) for w in witnesses)
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # raw uint32 key data (numpyro.prng_key)
        key = jax.random.wrap_key_data(key)
    return _noise(tuple(shape), jnp.dtype(dtype))(key, *witnesses)


def _noise(shape, dtype):
    @custom_vmap
    def noise(keys, *witnesses):
        flat = keys.reshape(-1)
        draws = jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(flat)
        return draws.reshape(keys.shape + shape)

    @noise.def_vmap
    def rule(axis_size, in_batched, keys, *witnesses):
        if not in_batched[0]:  # the same key for every element: split it along this axis
            split = jax.vmap(lambda k: jax.random.split(k, axis_size))(keys.reshape(-1))  # (K, n)
            keys = jnp.moveaxis(split.reshape(keys.shape + (axis_size,)), -1, 0)
        # the witnesses, batched here or not, may still be batched by an outer vmap
        return noise(keys, *witnesses), True

    return noise

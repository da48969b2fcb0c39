"""Shared arithmetic of importance-weighted objectives (one place; objectives only call these)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["log_mean_exp", "normalised_weights", "leave_one_out"]


def log_mean_exp(log_w: jax.Array, axis: int = -1) -> jax.Array:
    """log(mean(exp(log_w))) along `axis`, computed stably."""
    return jax.nn.logsumexp(log_w, axis=axis) - jnp.log(log_w.shape[axis])


def normalised_weights(log_w: jax.Array, axis: int = -1) -> jax.Array:
    """Self-normalised importance weights exp(log_w) / sum(exp(log_w)), cut from the gradient."""
    return jax.lax.stop_gradient(jax.nn.softmax(log_w, axis=axis))


def leave_one_out(log_w: jax.Array) -> jax.Array:
    """VIMCO's baselines: for each i of the (k,) log weights, log_mean_exp of the log weights
    with log_w[i] replaced by the mean of the others (k >= 2)."""
    k = log_w.shape[-1]
    others = (jnp.sum(log_w) - log_w) / (k - 1)
    swapped = jnp.where(jnp.eye(k, dtype=bool), others[:, None], log_w[None, :])
    return log_mean_exp(swapped, axis=-1)

"""Estimating an objective's value at a fitted guide."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["evaluate"]


def evaluate(result, objective, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """`(mean, standard error)` of `n` independent estimates of `objective` at a `FitResult`'s
    parameters (e.g. to report a bound of a trained guide, or to compare objectives)."""
    from provi.loop import make_loss

    loss = make_loss(result.model, result.guide, objective, result.layout)
    value = jax.jit(jax.vmap(lambda key: loss(result.params, result.consts, key, result.data)[1]))
    values = np.asarray(value(jax.random.split(jax.random.PRNGKey(seed), n)), dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n))

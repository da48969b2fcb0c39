"""Evaluating a fitted guide: an objective's value, and held-out log-likelihoods per data point."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.bound import BoundGuide, BoundModel, KeyStream
from provi.core.objective import Objective
from provi.core.pointwise import pointwise_density
from provi.core.vocab import sim
from provi.engine.loss import make_loss
from provi.programs import ModelProgram, NumPyroGuide

__all__ = ["evaluate", "log_likelihood"]


def evaluate(model: ModelProgram, guide, params, consts, data, layout, objective: Objective, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """`(mean, standard error)` of `n` independent estimates of `objective` at `params` (e.g. to
    report a bound of a trained guide, or to compare objectives). `FitResult.evaluate` calls this."""
    loss = make_loss(model, guide, objective, layout)
    value = jax.jit(jax.vmap(lambda key: loss(params, consts, key, data)[1]))
    values = np.asarray(value(jax.random.split(jax.random.PRNGKey(seed), n)), dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n))


def log_likelihood(model: ModelProgram, guide, params, consts, args: tuple, kwargs: dict, *, k: int = 1000,
                   plate: str = "data", chunk: int = 100, seed: int = 0) -> np.ndarray:
    """log p(x_i) of each element of plate `plate` at the model's arguments `args`/`kwargs`,
    estimated by importance sampling with `k` draws from an amortized NumPyro guide:
    log (1/k) sum_j p(x_i, z_ij) / q(z_ij | x_i). A lower bound in expectation that tightens as k
    grows (Burda et al. 2016). Every latent site must lie in the plate; model parameters are the
    fitted point values. `provi.nn.log_likelihood` calls this with a fit."""
    if not isinstance(guide, NumPyroGuide):
        raise TypeError("log_likelihood needs a fit with an amortized NumPyro guide")
    chunk = int(min(chunk, k))
    if k % chunk:
        raise ValueError(f"k={k} must be a multiple of chunk={chunk}")

    @jax.jit
    def block(params, key):
        keys = KeyStream(key)
        bound_model = BoundModel(model, params["model"], keys, args, kwargs)
        bound_guide = BoundGuide(guide, params["guide"], consts, keys, args, kwargs)
        z, _ = sim(bound_guide, n=chunk)
        p = pointwise_density(bound_model, z, plate=plate)
        q = pointwise_density(bound_guide, z, plate=plate)
        return jax.nn.logsumexp(p.local - q.local, axis=0)

    keys = jax.random.split(jax.random.PRNGKey(seed), k // chunk)
    parts = jnp.stack([block(params, kk) for kk in keys])
    return np.asarray(jax.nn.logsumexp(parts, axis=0) - jnp.log(k))

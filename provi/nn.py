"""Neural networks in models and guides, and per-data-point densities for amortized inference.

- `module(name, net)` registers an equinox module's arrays as one `numpyro.param` site (NumPyro's
  own `numpyro.contrib.module.eqx_module`), so `provi.fit` learns a decoder in the model
  (`params["model"]`) and an encoder in the guide (`params["guide"]`).
- `pointwise_density(program, values, plate=)` splits a log density into the terms of each element
  of a data plate and the rest: what per-data-point objectives (IWAE, DReG) and held-out
  log-likelihoods need.
- `log_likelihood(result, *args, k=)` estimates log p(x_i) of each data point by importance
  sampling with `k` draws from the amortized guide.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.pointwise import Pointwise, pointwise_density

__all__ = ["module", "Pointwise", "pointwise_density", "log_likelihood"]


def module(name: str, net: Any):
    """Register the inexact arrays of equinox module `net` as the parameter site `name + "$params"`
    and return the module with the current values; use it inside a model or a guide:

        decoder = provi.nn.module("decoder", DECODER)   # DECODER made once, outside the model
        logits = jax.vmap(decoder)(z)
    """
    try:
        import equinox as eqx
    except ImportError as exc:  # pragma: no cover - equinox is a dependency
        raise ImportError("provi.nn.module needs equinox (pip install equinox)") from exc
    if not isinstance(net, eqx.Module):
        raise TypeError(
            f"provi.nn.module({name!r}, ...) takes an equinox Module, got {type(net).__name__}; "
            "for flax use numpyro.contrib.module.flax_module"
        )
    from numpyro.contrib.module import eqx_module

    return eqx_module(name, net)


def log_likelihood(result, *args, k: int = 1000, plate: str = "data", chunk: int = 100, seed: int = 0, **kwargs) -> np.ndarray:
    """log p(x_i) of each element of plate `plate` at the model's arguments `args`/`kwargs` (e.g.
    held-out data, with subsampling off), estimated by importance sampling with `k` draws from the
    fitted amortized guide: log (1/k) sum_j p(x_i, z_ij) / q(z_ij | x_i). A lower bound in
    expectation that tightens as k grows (Burda et al. 2016). Needs a NumPyro guide whose latent
    sites all lie in the plate; model parameters are the fitted point values.
    """
    from provi.core.vocab import BoundGuide, BoundModel, KeyStream, sim

    if not hasattr(result.guide, "guide"):
        raise TypeError("log_likelihood needs a fit with an amortized NumPyro guide")
    kwargs = {**result.kwargs, **kwargs}
    args = args if args else result.args
    chunk = int(min(chunk, k))
    if k % chunk:
        raise ValueError(f"k={k} must be a multiple of chunk={chunk}")

    @jax.jit
    def block(params, key):
        keys = KeyStream(key)
        model = BoundModel(result.model, params["model"], keys, args, kwargs)
        guide = BoundGuide(result.guide, params["guide"], result.consts, keys, args, kwargs)
        z, _ = sim(guide, n=chunk)
        p = pointwise_density(model, z, plate=plate)
        q = pointwise_density(guide, z, plate=plate)
        return jax.nn.logsumexp(p.local - q.local, axis=0)

    keys = jax.random.split(jax.random.PRNGKey(seed), k // chunk)
    parts = jnp.stack([block(result.params, kk) for kk in keys])
    return np.asarray(jax.nn.logsumexp(parts, axis=0) - jnp.log(k))

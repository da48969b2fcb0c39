"""Neural networks in models and guides, and per-data-point densities for amortized inference.

Floor 7 (beside `provi.result`): modelling helpers for users' models, and evaluation of fits.

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

import equinox as eqx
import numpy as np
from numpyro.contrib.module import eqx_module

from provi.core.pointwise import Pointwise, pointwise_density
from provi.diagnostics import evaluation

__all__ = ["module", "Pointwise", "pointwise_density", "log_likelihood"]


def module(name: str, net: Any):
    """Register the inexact arrays of equinox module `net` as the parameter site `name + "$params"`
    and return the module with the current values; use it inside a model or a guide:

        decoder = provi.nn.module("decoder", DECODER)   # DECODER made once, outside the model
        logits = jax.vmap(decoder)(z)
    """
    if not isinstance(net, eqx.Module):
        raise TypeError(
            f"provi.nn.module({name!r}, ...) takes an equinox Module, got {type(net).__name__}; "
            "for flax use numpyro.contrib.module.flax_module"
        )
    return eqx_module(name, net)


def log_likelihood(result, *args, k: int = 1000, plate: str = "data", chunk: int = 100, seed: int = 0, **kwargs) -> np.ndarray:
    """log p(x_i) of each element of plate `plate` at the model's arguments `args`/`kwargs` (e.g.
    held-out data, with subsampling off; the fitted data by default), estimated by importance
    sampling with `k` draws from the fitted amortized guide: log (1/k) sum_j p(x_i, z_ij) /
    q(z_ij | x_i). A lower bound in expectation that tightens as k grows (Burda et al. 2016).
    Needs a NumPyro guide whose latent sites all lie in the plate; model parameters are the fitted
    point values.
    """
    kwargs = {**result.kwargs, **kwargs}
    args = args if args else result.args
    return evaluation.log_likelihood(result.model, result.guide, result.params, result.consts, args, kwargs,
                                     k=k, plate=plate, chunk=chunk, seed=seed)

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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from provi.errors import ModelError

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


class Pointwise(NamedTuple):
    """A log density split by a data plate.

    `local` (..., B): the terms of each element of the plate, without the minibatch scale; `rest`
    (...): every other term, scaled as NumPyro scales it; `scale`: size / subsample size. The
    full log density is `rest + scale * local.sum(-1)`.
    """

    local: jax.Array
    rest: jax.Array
    scale: float


def _function_and_params(bound):
    from provi.core.vocab import BoundGuide, BoundModel, program_of
    from provi.guides.program import NumPyroGuide, constrain_params

    prog = program_of(bound)
    if isinstance(bound, BoundModel):
        return prog.model, constrain_params(bound.params, prog.info.params), prog.shapes
    if isinstance(bound, BoundGuide) and isinstance(prog, NumPyroGuide):
        params = jax.lax.stop_gradient(bound.params) if bound.detached else bound.params
        return prog.guide, constrain_params(params, prog.params_spec), prog.shapes
    raise TypeError("pointwise_density takes the model, or a NumPyro guide function, that an objective receives")


def _split(trace: dict, plate: str):
    local, rest, scale = None, 0.0, None
    for name, site in trace.items():
        if site["type"] != "sample":
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == plate]
        lp = site["fn"].log_prob(site["value"])
        site_scale = 1.0 if site.get("scale") is None else site["scale"]
        if not frames:
            rest = rest + jnp.sum(lp * site_scale)
            continue
        frame = frames[0]
        lp = jnp.broadcast_to(lp, tuple(site["fn"].batch_shape))
        axis = lp.ndim + frame.dim
        lp = jnp.moveaxis(lp, axis, -1).reshape(-1, lp.shape[axis]).sum(0)
        size, sub = trace[plate]["args"][:2] if plate in trace else (1, None)
        ratio = 1.0 if sub is None else size / sub
        scale = ratio
        term = lp * (site_scale / ratio)
        local = term if local is None else local + term
    if local is None:
        raise ModelError(f"no sample site lies inside plate {plate!r}: name the data plate (plate=...)")
    return local, rest, scale


def pointwise_density(program, values: dict, *args, plate: str = "data", **kwargs) -> Pointwise:
    """The log density of `values` under a bound model or NumPyro guide, split by plate `plate`.

    Leading axes of `values` beyond each site's own shape are particle axes, as in `provi.density`.
    """
    from provi.core.vocab import _call_args
    from provi.guides.program import batch_ndim, vectorise

    args, kwargs = _call_args(program, args, kwargs)
    fn, params, shapes = _function_and_params(program)
    shapes = {k: v for k, v in shapes.items() if k in values}
    nb = batch_ndim(values, shapes) if values else 0
    key = program.keys() if hasattr(program, "keys") and callable(program.keys) else jax.random.PRNGKey(0)
    box = {}

    def one(v):
        seeded = handlers.substitute(handlers.seed(fn, key), data={**params, **v})
        tr = handlers.trace(seeded).get_trace(*args, **kwargs)
        local, rest, scale = _split(tr, plate)
        box["scale"] = scale
        return local, rest

    local, rest = vectorise(one, nb)(values)
    return Pointwise(local, rest, box["scale"])


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

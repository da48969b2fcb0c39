"""Log densities split by a data plate: the terms of each plate element and the rest.

Per-data-point objectives (IWAE, DReG with `plate=`) and held-out log-likelihoods of amortized
models need log p(x_i, z_i) and log q(z_i | x_i) for each element i of the data plate, not their
sum: `pointwise_density` gives them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from provi.core.batching import batch_ndim, vectorise
from provi.core.bound import BoundGuide, BoundModel, call_args, numpyro_fn
from provi.core.trace import run
from provi.errors import ModelError

__all__ = ["Pointwise", "pointwise_density"]


class Pointwise(NamedTuple):
    """A log density split by a data plate.

    `local` (..., B): the terms of each element of the plate, without the minibatch scale; `rest`
    (...): every other term, scaled as NumPyro scales it; `scale`: size / subsample size. The
    full log density is `rest + scale * local.sum(-1)`. `outside`: the names of the latent
    (unobserved) sample sites that lie outside the plate.
    """

    local: jax.Array
    rest: jax.Array
    scale: float
    outside: tuple = ()


def _split(trace: dict, plate: str, sites=None):
    local, rest, scale, outside = None, 0.0, None, []
    for name, site in trace.items():
        if site["type"] != "sample":
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == plate]
        if not frames and not site["is_observed"]:
            outside.append(name)
        if sites is not None and name not in sites:
            continue
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
    if local is None and outside:  # a global latent: callers that need the plate say why (IWAE(plate=))
        local = jnp.zeros(())
    if local is None:
        raise ModelError(f"no sample site lies inside plate {plate!r}: name the data plate (plate=...)")
    return local, rest, scale, tuple(outside)


def pointwise_density(program, values: dict, *args, plate: str = "data", sites=None, **kwargs) -> Pointwise:
    """The log density of `values` under a bound model or NumPyro guide, split by plate `plate`.

    Leading axes of `values` beyond each site's own shape are particle axes, as in `provi.density`.
    `sites` (names) restricts the terms to those sites' own.
    """
    if not isinstance(program, (BoundModel, BoundGuide)):
        raise TypeError("pointwise_density takes the model or guide an objective receives")
    args, kwargs = call_args(program, args, kwargs)
    if program.program.numpyro_fn(program.params) is None:
        raise ModelError(
            f"per-data-point densities need the model, or a NumPyro guide function; got a {type(program.program).__name__} "
            "guide, a family over the whole latent vector: write the guide as a NumPyro function with the data plate"
        )
    if isinstance(program, BoundModel) and program.program.info.enumerated:
        raise ModelError(
            f"per-data-point densities of a model with enumerated sites {[s.name for s in program.program.info.enumerated]} "
            "are not supported (the sites are summed out of its density as a whole): use plate=None"
        )
    fn, params = numpyro_fn(program)
    shapes = {k: v for k, v in program.program.shapes.items() if k in values}
    nb = batch_ndim(values, shapes) if values else 0
    key = program.keys()
    box = {}

    def one(v):
        tr = run(fn, key, args, kwargs, {**params, **v})
        local, rest, scale, outside = _split(tr, plate, sites)
        box["scale"], box["outside"] = scale, outside
        return local, rest

    local, rest = vectorise(one, nb)(values)
    return Pointwise(local, rest, box["scale"], box["outside"])

"""Discrete sites summed out of a model's density, and drawn from their exact conditionals.

A model marks a discrete site with `infer={"enumerate": "parallel"}` (or
`numpyro.contrib.funsor.config_enumerate`), as for NumPyro's NUTS and `TraceEnum_ELBO`. provi then
fits the marginal density of the other sites: the enumerated sites are summed out exactly, plate
by plate and along `markov` chains and `scan` (in time linear in the chain's length), by NumPyro's
funsor-based tensor variable elimination (`numpyro.contrib.funsor`: the implementation NumPyro's
own samplers use, kept with NumPyro). Their posterior given the continuous sites comes from
`infer_discrete` (forward filtering, backward sampling; `temperature=0`: the MAP assignment).
"""

from __future__ import annotations

from typing import Callable

import jax
from numpyro import handlers

from provi.core.trace import run
from provi.errors import ModelError

__all__ = ["enumerated_log_density", "draw_enumerated", "check_enumerable"]


def check_enumerable(model: Callable, args: tuple, kwargs: dict, max_plate_nesting: int) -> None:
    """Refuse a model whose enumerated sites provi cannot yet sum out correctly: a site (latent
    or observed) that depends on two or more enumerated sites (a chain of discrete states, as in an
    HMM, or nested discrete sites). The contraction NumPyro's funsor path computes for those was
    found wrong or failing with the JAX and funsor versions provi is tested with, so provi says so
    instead of fitting a wrong density. Each enumerated site may have any number of dependents that
    depend on it alone (mixtures, annotation models such as Dawid-Skene, zero-inflation)."""
    from numpyro.contrib.funsor import enum  # heavy: imported when a model needs it

    box = []

    def go(key):
        box.append(run(enum(model, -max_plate_nesting - 1), key, args, kwargs))
        return 0

    jax.make_jaxpr(go)(jax.numpy.zeros(2, jax.numpy.uint32))
    enumerated = [n for n, s in box[0].items() if s["type"] == "sample" and s["infer"].get("enumerate") == "parallel"]
    for name, site in box[0].items():
        if site["type"] != "sample":
            continue
        shape = jax.numpy.broadcast_shapes(tuple(site["fn"].batch_shape), jax.numpy.shape(site["value"])[: len(jax.numpy.shape(site["value"])) - len(site["fn"].event_shape)])
        enum_dims = [d for d in range(len(shape)) if len(shape) - d > max_plate_nesting and shape[d] > 1]
        if len(enum_dims) > 1:
            raise ModelError(
                f"site {name!r} involves {len(enum_dims)} enumerated sites (of {enumerated}): provi sums out "
                "enumerated sites that no other enumerated site depends on (mixtures, annotation models), but not yet "
                "chains of discrete states (HMMs) or nested discrete sites. Enumerate one of them, or give the others "
                "guide sites with gradient estimators (provi.estimators.Enumerate(), Reinforce(), ...)"
            )


def enumerated_log_density(model: Callable, key, args: tuple, kwargs: dict, values: dict, max_plate_nesting: int) -> jax.Array:
    """log p(data, values) with every enumerated site of `model` summed out."""
    from numpyro.contrib.funsor import enum, log_density  # heavy: imported when a model needs it

    fn = handlers.seed(enum(model, -max_plate_nesting - 1), key)
    return log_density(fn, args, kwargs, values)[0]


def draw_enumerated(model: Callable, key, args: tuple, kwargs: dict, values: dict, sites: tuple, max_plate_nesting: int,
                    temperature: int = 1) -> dict:
    """The enumerated `sites` drawn from their exact joint conditional given `values` (the other
    latent sites and the model's parameters); `temperature=0`: the most probable assignment."""
    from numpyro.contrib.funsor import infer_discrete

    k_draw, k_run = jax.random.split(key)
    conditioned = handlers.substitute(model, data=values)
    fn = infer_discrete(conditioned, first_available_dim=-max_plate_nesting - 1, temperature=temperature, rng_key=k_draw)
    tr = run(fn, k_run, args, kwargs)
    return {name: tr[name]["value"] for name in sites}

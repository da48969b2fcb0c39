"""Discrete sites summed out of a model's density, and drawn from their exact conditionals.

A model marks a discrete site with `infer={"enumerate": "parallel"}` (or
`numpyro.contrib.funsor.config_enumerate`), as for NumPyro's NUTS and `TraceEnum_ELBO`. provi then
fits the marginal density of the other sites: the enumerated sites are summed out exactly, plate
by plate and along `markov` chains and `scan` (in time linear in the chain's length), by NumPyro's
funsor-based tensor variable elimination (`numpyro.contrib.funsor`: the implementation NumPyro's
own samplers use, kept with NumPyro), except that a chain written with `scan` is summed by
provi's forward algorithm (`provi.core.chain`: 7x faster than funsor's parallel scan). Their
posterior given the continuous sites comes from `infer_discrete` (`temperature=0`: the MAP
assignment), and for a `scan` chain from forward filtering, backward sampling (Viterbi).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import jax
from numpyro import handlers

from provi.core.chain import PREV, Chain, backward, chain_factors, forward
from provi.core.trace import OwnInfer, base_distribution, run
from provi.defaults import DRAW_ENUMERATED_MAX_JOINT, ENUMERATE_MEMORY_BUDGET
from provi.errors import ModelError

__all__ = ["enumerated_log_density", "draw_enumerated", "check_enumerable"]


def check_enumerable(model: Callable, args: tuple, kwargs: dict, max_plate_nesting: int) -> tuple[str, bool]:
    """Trace `model` under enumeration once, abstractly, so that a model NumPyro's funsor path
    cannot enumerate fails here, with its site named, rather than inside the compiled step.

    Returns why the enumerated sites cannot be drawn from their conditional (their density is
    summed out exactly all the same), or "", and whether they form one `scan` chain that
    `provi.core.chain` sums and draws. NumPyro's `infer_discrete` does not support `scan`, and
    along a chain of enumerated sites (a site that depends on two or more of them, as in an HMM
    written with `markov`) its memory grows exponentially with the chain's length, so such chains
    are drawn only while their joint state space is at most `DRAW_ENUMERATED_MAX_JOINT`."""
    from numpyro.contrib.funsor import enum  # heavy: imported when a model needs it

    box = []

    def go(key):
        box.append(run(enum(OwnInfer(model), -max_plate_nesting - 1), key, args, kwargs))
        return 0

    try:
        jax.make_jaxpr(go)(jax.numpy.zeros(2, jax.numpy.uint32))
    except (IndexError, ValueError, TypeError, NotImplementedError, AssertionError) as e:
        raise ModelError(
            f"NumPyro's enumeration cannot run this model's enumerated sites ({type(e).__name__}: {e}). Check "
            "max_plate_nesting and that each plate has its own dim (numpyro.plate(..., dim=-k)); NumPyro's scan "
            "enumerates one enumerated site per scan step (write longer steps with numpyro.contrib.funsor.markov); "
            "or give the discrete sites guide sites with gradient estimators (provi.estimators.Reinforce(), ...)"
        ) from e
    tr = box[0]
    enumerated = [n for n, s in tr.items() if s["type"] == "sample" and s["infer"].get("enumerate") == "parallel"]
    _check_budget(tr, enumerated)
    scanned = [n for n in enumerated if tr[n].get("_control_flow_done")]
    if scanned:
        return _check_chain(model, args, kwargs, max_plate_nesting, enumerated, scanned)
    joint = math.prod(int(jax.numpy.shape(base_distribution(tr[n]["fn"]).enumerate_support(expand=False))[0]) for n in enumerated)
    if joint <= DRAW_ENUMERATED_MAX_JOINT:
        return "", False
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        shape = _factor_shape(site)
        if sum(1 for d in range(len(shape)) if len(shape) - d > max_plate_nesting and shape[d] > 1) > 1:
            return (f"site {name!r} depends on a chain of enumerated sites (of {enumerated}, {joint} joint states), along "
                    f"which NumPyro's infer_discrete needs memory exponential in the chain's length (provi draws chains of "
                    f"at most {DRAW_ENUMERATED_MAX_JOINT} joint states; write the chain with numpyro's scan, "
                    "whose states provi draws by forward filtering, backward sampling)"), False
    return "", False


def _check_chain(model, args, kwargs, max_plate_nesting, enumerated, scanned) -> tuple[str, bool]:
    """Whether the enumerated sites inside `scan` form a chain `provi.core.chain` handles, and
    whether every enumerated site is one of its states (then they can be drawn)."""
    box = []

    def go(key):
        box.append(chain_factors(model, key, args, kwargs, {}, max_plate_nesting))
        return 0

    jax.make_jaxpr(go)(jax.numpy.zeros(2, jax.numpy.uint32))
    chain = box[0]
    if not isinstance(chain, Chain):
        return (f"the enumerated sites {scanned} sit inside numpyro's scan, where NumPyro's infer_discrete cannot "
                f"draw them and provi's forward filtering cannot either: {chain}"), False
    states = set(chain.sites) | {PREV + n for n in chain.sites}
    others = [n for n in enumerated if n not in states]
    if others:
        return (f"the enumerated sites {others} are not states of the scan chain {list(chain.sites)}; provi draws "
                "a chain's states only when they are the model's only enumerated sites"), True
    return "", True


def _factor_shape(site: dict) -> tuple:
    """The shape of a sample site's log-density factor under enumeration: its distribution's batch
    shape broadcast with its value's (enumerated dims included)."""
    value = site["value"]
    batch = jax.numpy.shape(value)[: jax.numpy.ndim(value) - len(site["fn"].event_shape)]
    return jax.numpy.broadcast_shapes(tuple(site["fn"].batch_shape), batch)


def _check_budget(tr: dict, enumerated: list) -> None:
    """Refuse, before anything is allocated, a model one of whose log-density factors would be
    larger than `ENUMERATE_MEMORY_BUDGET` bytes with the enumerated sites broadcast into it."""
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        shape = _factor_shape(site)
        size = math.prod(shape) * jax.numpy.dtype(jax.numpy.result_type(float)).itemsize
        if size > ENUMERATE_MEMORY_BUDGET:
            plates = {f.name: f.size for f in site.get("cond_indep_stack", ())}
            raise ModelError(
                f"site {name!r} would hold a log-density tensor of shape {shape} ({size / 2**30:.1f} GiB) with the "
                f"enumerated sites {enumerated} broadcast into it, in the plates {plates}: more than provi's budget of "
                f"{ENUMERATE_MEMORY_BUDGET / 2**30:.0f} GiB (provi.defaults.ENUMERATE_MEMORY_BUDGET). Enumerate fewer sites "
                "together (write chains with numpyro.contrib.funsor.markov or scan, so that only neighbours meet), "
                "subsample the plates, or give some discrete sites guide sites with gradient estimators"
            )


def enumerated_log_density(model: Callable, key, args: tuple, kwargs: dict, values: dict, max_plate_nesting: int,
                           chain: bool = False) -> jax.Array:
    """log p(data, values) with every enumerated site of `model` summed out (`chain`: they form
    one `scan` chain, summed by the forward algorithm)."""
    from numpyro.contrib.funsor import enum, log_density  # heavy: imported when a model needs it

    if chain:
        return forward(chain_factors(model, key, args, kwargs, values, max_plate_nesting))[1]

    fn = handlers.seed(enum(OwnInfer(model), -max_plate_nesting - 1), key)
    return log_density(fn, args, kwargs, values)[0]


def draw_enumerated(model: Callable, key, args: tuple, kwargs: dict, values: dict, sites: dict, max_plate_nesting: int,
                    temperature: int = 1, chain: bool = False) -> dict:
    """The enumerated `sites` ({name: shape}) drawn from their exact joint conditional given
    `values` (the other latent sites and the model's parameters); `temperature=0`: the most
    probable assignment. `chain`: they are the states of one `scan` chain, drawn by forward
    filtering, backward sampling (Viterbi)."""
    from numpyro.contrib.funsor import infer_discrete

    k_draw, k_run = jax.random.split(key)
    if chain:
        c = chain_factors(model, k_run, args, kwargs, values, max_plate_nesting)
        drawn = backward(c, forward(c, temperature)[0], k_draw, temperature)
        return {name: drawn[name].reshape(shape) for name, shape in sites.items()}
    conditioned = handlers.substitute(OwnInfer(model), data=values)
    fn = infer_discrete(conditioned, first_available_dim=-max_plate_nesting - 1, temperature=temperature, rng_key=k_draw)
    with warnings.catch_warnings():
        # funsor's backward sampling through `scan` asks JAX for float64 and JAX, without x64,
        # warns that it gives float32: the draws are right either way (tested against brute force)
        warnings.filterwarnings("ignore", message="Explicitly requested dtype float64", category=UserWarning)
        tr = run(fn, k_run, args, kwargs)
    return {name: tr[name]["value"] for name in sites}

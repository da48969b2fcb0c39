"""Running NumPyro programs, in one place: seed, substitute and trace; site log densities; abstract
tracing; `numpyro.param` storage.

Everything in provi that runs a model or a NumPyro guide goes through `run` (or `trace_model`,
which adds flat-prior values and error reporting for a model's first run), and every sum of
scaled site log densities through `sum_log_prob`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import ImproperUniform, Unit, biject_to
from numpyro.primitives import Messenger
from numpyro.primitives import plate as numpyro_plate

from provi.errors import ModelError

__all__ = [
    "OwnInfer",
    "Unobserved",
    "run",
    "trace_model",
    "abstract_trace",
    "site_log_prob",
    "sum_log_prob",
    "base_distribution",
    "is_latent",
    "as_jax",
    "constrain_params",
    "unconstrain_params",
]

_HIDDEN = tuple(os.path.dirname(m.__file__) for m in (sys.modules["numpyro"], sys.modules["provi"]))


class OwnInfer(Messenger):
    """Give each sample site its own copy of its `infer` dict. NumPyro's funsor `enum` handler
    writes the site's enumeration dims into `msg["infer"]` in place, so a model that passes one
    dict to several sites (`ENUM = {"enumerate": "parallel"}` ... `infer=ENUM`, a common idiom) has
    every site read the last site's dims: NumPyro 0.22 then sums an HMM out wrongly (a 4-step chain
    off by 0.07 nats, a 6-step one by 1.5) or fails inside `scan`; NumPyro's `scan` writes its
    index there too. Installed innermost (`run` does, and the enumeration handlers), so it copies
    before any handler writes, and the user's dict is never changed."""

    def process_message(self, msg):
        if msg["type"] == "sample" and msg.get("infer") is not None:
            infer = dict(msg["infer"])
            if not msg.get("_control_flow_done"):  # not a scan's own site: drop what NumPyro left in a shared dict
                for k in _NUMPYRO_INFER_KEYS:
                    infer.pop(k, None)
            msg["infer"] = infer


_NUMPYRO_INFER_KEYS = ("_scan_current_index", "dim_to_name", "name_to_dim")


class Unobserved(Messenger):
    """Draw the observed `sites` from their distributions instead of conditioning on their data:
    predictive draws with the model's data in place, so a model that needs its data to run (a
    `scan` over it, sizes taken from it) still runs. `numpyro.factor` sites stay as they are.

    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def m(y): numpyro.sample("y", dist.Normal(0, 1), obs=y)
    >>> float(run(Unobserved(m, {"y"}), jax.random.PRNGKey(0), (5.0,), {})["y"]["value"]) != 5.0
    True
    """

    def __init__(self, fn=None, sites=()):
        self.sites = frozenset(sites)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and msg["name"] in self.sites and not isinstance(msg["fn"], Unit):
            msg["is_observed"] = False
            msg["value"] = None


def run(fn: Callable, key, args: tuple, kwargs: dict, values: dict | None = None, substitute_fn=None) -> dict:
    """The trace of `fn(*args, **kwargs)` under `seed(key)`, with `values` ({site: value}, e.g.
    constrained `numpyro.param` values and latent draws) substituted.

    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def m(): numpyro.sample("x", dist.Normal(0, 1))
    >>> float(run(m, jax.random.PRNGKey(0), (), {}, {"x": 0.5})["x"]["value"])
    0.5
    """
    fn = handlers.seed(OwnInfer(fn), key)
    if substitute_fn is not None:
        fn = handlers.substitute(fn, substitute_fn=substitute_fn)
    if values:
        fn = handlers.substitute(fn, data=values)
    return handlers.trace(fn).get_trace(*args, **kwargs)


def _model_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Drop the leading frames that belong to provi and NumPyro, so the user sees their own code."""
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_HIDDEN):
        tb = tb.tb_next
    return tb


def _unconstrained_zero(site):
    fn = site["fn"]
    shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    t = biject_to(fn.support)
    return t(jnp.zeros(t.inverse_shape(shape)))


def _improper_value(site):
    """A value for a latent site with a flat (improper) prior, which cannot be sampled: zero in
    the unconstrained space (NumPyro's samplers refuse `ImproperUniform`)."""
    if site["type"] != "sample" or site.get("is_observed") or not isinstance(base_distribution(site["fn"]), ImproperUniform):
        return None
    return _unconstrained_zero(site)


def _inspection_value(site):
    """A value for every continuous latent site without calling its sampler: zero in the
    unconstrained space (as NumPyro's `init_to_median`-style initialisers place a site in its
    support), so inspecting a model never needs a sampler (a truncated StudentT's needs
    tensorflow_probability). Discrete sites are drawn from their (simple) samplers."""
    if site["type"] != "sample" or site.get("is_observed") or site["fn"].support.is_discrete:
        return None
    return _unconstrained_zero(site)


def trace_model(model: Callable, args: tuple, kwargs: dict, key, values: dict | None = None, prior: bool = False) -> dict:
    """`run` for a model's inspection: continuous latent sites get the value zero in the
    unconstrained space (with `prior=True`, a draw from their prior, flat priors still zero), and
    the model's own exceptions surface unchanged, with provi's and NumPyro's frames cut off."""
    try:
        return run(model, key, args, kwargs, values, substitute_fn=_improper_value if prior else _inspection_value)
    except Exception as exc:
        mismatch = _plate_mismatch(exc) if isinstance(exc, ValueError) else None
        if mismatch is not None:
            raise ModelError(mismatch) from None
        exc.add_note(f"(raised by the model {getattr(model, '__name__', model)!r} while provi traced it)")
        raise exc.with_traceback(_model_traceback(exc.__traceback__)) from None


def _plate_mismatch(exc: ValueError) -> str | None:
    """For NumPyro's broadcasting error inside a plate (a site whose shape does not fit the
    plate's size), a message naming the site and the plate, read from the frames of NumPyro's
    `sample` and of the plate that raised; None for any other error."""
    if "Incompatible shapes for broadcasting" not in str(exc):
        return None
    site = plate = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "sample" and frame.f_code.co_filename.endswith(os.path.join("numpyro", "primitives.py")):
            site = frame.f_locals.get("name", site)
        owner = frame.f_locals.get("self")
        if isinstance(owner, numpyro_plate):
            plate = owner
        tb = tb.tb_next
    if site is None or plate is None:
        return None
    return (f"site {site!r} does not fit plate {plate.name!r} of size {plate.size} (at dim {plate.dim}): {exc}. "
            f"Inside the plate, a site's batch shape must be broadcastable to the plate's size along dim {plate.dim}: "
            f"give its distribution parameters of length {plate.size} there (or 1), or move it out of the plate")


def abstract_trace(model: Callable, args: tuple, kwargs: dict) -> dict:
    """The trace of one run of `model` at `args`/`kwargs` (as given), traced abstractly: no
    computation, no compilation."""
    box = []

    def go(key):
        box.append(trace_model(model, args, kwargs, key))
        return 0

    jax.make_jaxpr(go)(np.zeros(2, np.uint32))
    return box[0]


def base_distribution(fn):
    """Strip NumPyro's wrappers (Independent, Masked, Expanded, Transformed: each holds `base_dist`)
    off a site's distribution."""
    while (inner := vars(fn).get("base_dist")) is not None:
        fn = inner
    return fn


def is_latent(site: dict) -> bool:
    """Whether a trace entry is a latent (unobserved) sample site."""
    return site["type"] == "sample" and not site["is_observed"]


def site_log_prob(site: dict, value=None, scaled: bool = True) -> jax.Array:
    """A site's log density at `value` (default: its traced value), summed over its shape and
    scaled as NumPyro scales it (`scaled=False`: the draw's own log density, as a score function
    needs; a subsample or scale handler scales the objective's terms, not the score)."""
    value = site["value"] if value is None else value
    intermediates = site.get("intermediates")
    lp = site["fn"].log_prob(value, intermediates) if intermediates else site["fn"].log_prob(value)
    if scaled and site.get("scale") is not None:
        lp = lp * site["scale"]
    return jnp.sum(lp)


def sum_log_prob(trace: dict, sites=None) -> jax.Array:
    """The sum of the scaled log densities of a trace's sample sites (only `sites`, if given)."""
    total = jnp.zeros(())
    for name, site in trace.items():
        if site["type"] == "sample" and (sites is None or name in sites):
            total = total + site_log_prob(site)
    return total


def as_jax(tree):
    """NumPy arrays in `tree` as JAX arrays (so that a model may index them with traced indices)."""
    return jax.tree.map(lambda x: jax.device_put(x) if isinstance(x, np.ndarray) else x, tree)  # no compiled copy, as jnp.asarray's


def constrain_params(unconstrained: dict, spec: dict) -> dict:
    """Map `numpyro.param` values from their unconstrained storage to their constraints (`spec`:
    name -> (initial value, constraint); a value may be a pytree, each leaf is mapped)."""
    return {k: jax.tree.map(biject_to(spec[k][1]), v) for k, v in unconstrained.items()}


def unconstrain_params(spec: dict) -> dict:
    """The unconstrained storage of `numpyro.param` initial values (`spec` as in `constrain_params`)."""
    return {k: jax.tree.map(lambda x, c=c: biject_to(c).inv(jnp.asarray(x)), v) for k, (v, c) in spec.items()}

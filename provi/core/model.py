"""Inspecting a NumPyro model once: its latent, observed and deterministic sites, with checks.

The model is traced a single time, abstractly (`provi.core.trace.abstract_trace`); nothing here
is on the hot path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import ImproperUniform, biject_to, constraints

from provi.core.plates import subsampled_plates
from provi.core.trace import abstract_trace, base_distribution, trace_model
from provi.defaults import MODEL_ENUMERATE_MAX_SUPPORT
from provi.errors import ModelError

__all__ = ["LatentSite", "ModelInfo", "inspect_model"]


@dataclasses.dataclass(frozen=True)
class LatentSite:
    """A latent sample site: its constrained shape, support and bijection to unconstrained space."""

    name: str
    shape: tuple[int, ...]
    support: Any
    transform: Any
    unconstrained_shape: tuple[int, ...]
    discrete: bool
    has_rsample: bool
    distribution: str
    improper: bool
    dtype: Any
    start: str | None = None  # where the Laplace start puts it instead of at the mode (`infer={"init": ...}`)

    @property
    def size(self) -> int:
        return int(np.prod(self.unconstrained_shape, dtype=int))


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What one run of the model shows: its sites in execution order."""

    latents: tuple[LatentSite, ...]
    observed: dict[str, Any]  # name -> observed value (None where the model computes it from its data)
    deterministic: dict[str, tuple[int, ...]]  # name -> shape
    params: dict[str, tuple[Any, Any]]  # numpyro.param: name -> (initial value, constraint)
    subsampled: bool
    plates: dict = dataclasses.field(default_factory=dict)  # subsampled plates: name -> (size, subsample size)
    enumerated: tuple = ()  # discrete sites summed out of the density (infer={"enumerate": "parallel"})
    max_plate_nesting: int = 0  # how many batch dimensions the model's plates use
    undrawable: str = ""  # why the enumerated sites cannot be drawn (summed out exactly all the same), or ""
    chain: bool = False  # the enumerated sites form one `scan` chain, summed by provi's forward algorithm

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.latents)

    def latent(self, name: str) -> LatentSite:
        for s in self.latents:
            if s.name == name:
                return s
        raise KeyError(f"no latent site named {name!r}; the model's latent sites are {list(self.latent_names)}")


def _check_observed(name: str, site: dict) -> None:
    value = site["value"]
    fn = site["fn"]
    concrete = not isinstance(value, jax.core.Tracer)
    arr = np.asarray(value) if concrete else jax.ShapeDtypeStruct(jnp.shape(value), jnp.result_type(value))
    if concrete and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ModelError(
            f"observed site {name!r} has {bad} non-finite value(s) (NaN or inf) in its data. "
            "Remove or impute them, or mask them with numpyro.handlers.mask / obs_mask."
        )
    dist_shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    try:
        joint = jnp.broadcast_shapes(arr.shape, dist_shape)
    except ValueError:
        joint = None
    if joint is None or tuple(joint) != tuple(arr.shape):
        raise ModelError(
            f"observed site {name!r}: data of shape {arr.shape} does not match its distribution "
            f"{type(base_distribution(fn)).__name__} of shape {dist_shape} (batch {tuple(fn.batch_shape)}, "
            f"event {tuple(fn.event_shape)}). Reshape the data or the distribution's parameters so that "
            "they agree, e.g. inside a numpyro.plate of the data's length."
        )


def _latent_site(name: str, site: dict) -> LatentSite:
    fn = site["fn"]
    value = site["value"]
    support = fn.support
    discrete = bool(support.is_discrete)
    shape = tuple(jnp.shape(value))
    if discrete:
        transform, ushape = None, shape
    else:
        transform = biject_to(support)
        ushape = tuple(transform.inverse_shape(shape))
    return LatentSite(
        name=name,
        shape=shape,
        support=support,
        transform=transform,
        unconstrained_shape=ushape,
        discrete=discrete,
        has_rsample=bool(fn.has_rsample),
        distribution=type(base_distribution(fn)).__name__,
        improper=isinstance(base_distribution(fn), ImproperUniform),
        dtype=jnp.result_type(value),
        start=_site_start(name, site),
    )


SITE_STARTS = ("standard",)  # the values of a latent site's `infer={"init": ...}`


def _site_start(name: str, site: dict) -> str | None:
    """The site's own start, `infer={"init": "standard"}`: the Laplace start (`init="map"`) puts
    the family's marginal for it at N(0, I) in the unconstrained space, uncorrelated with the rest,
    instead of at the mode (a whitened sparse GP's inducing values start at their prior)."""
    start = site["infer"].get("init")
    if start is not None and start not in SITE_STARTS:
        raise ModelError(f"site {name!r}: unknown infer={{'init': {start!r}}}; a latent site's own start is one of {list(SITE_STARTS)}")
    return start


def inspect_model(model: Callable, args: tuple, kwargs: dict) -> ModelInfo:
    """Trace `model` once abstractly (no computation, no compilation), check its data, describe its sites.

    Observed data that the model passes through unchanged is checked for non-finite values here;
    data the model computes is checked when the fit first evaluates it.
    """
    if not callable(model):
        raise TypeError(f"the model must be a callable NumPyro program, got {type(model).__name__}")
    tr = abstract_trace(model, args, kwargs)
    latents, observed, determ, params, enumerated = [], {}, {}, {}, []
    subsampled = False
    for name, site in tr.items():
        kind = site["type"]
        if kind == "sample":
            if site["is_observed"]:
                if site["infer"].get("is_auxiliary") or name.startswith("_"):
                    continue
                if not _is_factor(site):
                    _check_observed(name, site)
                value = site["value"]
                observed[name] = None if isinstance(value, jax.core.Tracer) else value
            elif site["infer"].get("enumerate"):
                enumerated.append(_enumerated_site(name, site))
            else:
                latents.append(_latent_site(name, site))
        elif kind == "deterministic":
            determ[name] = tuple(jnp.shape(site["value"]))
        elif kind == "param":
            constraint = site["kwargs"].get("constraint", constraints.real)
            params[name] = (site["value"], constraint)
        elif kind == "plate":
            size, sub = site["args"][0], site["args"][1]
            subsampled |= sub is not None and sub < size
    if any(isinstance(v, jax.core.Tracer) for v, _ in params.values()):
        params = _concrete_params(model, args, kwargs, params)
    if not latents and not enumerated:
        raise ModelError(
            f"the model {getattr(model, '__name__', model)!r} has no latent sample site: there is nothing to infer "
            "(every sample statement is observed); add a prior for what you want to learn"
        )
    nesting = max([-f.dim for site in tr.values() for f in site.get("cond_indep_stack", ()) if f.dim is not None], default=0)
    return ModelInfo(tuple(latents), observed, determ, params, subsampled, subsampled_plates(tr), tuple(enumerated), nesting)


def _enumerated_site(name: str, site: dict) -> LatentSite:
    """A site marked for enumeration in the model, checked: discrete, parallel, small enough."""
    fn, how = site["fn"], site["infer"]["enumerate"]
    if how != "parallel":
        raise ModelError(
            f"site {name!r} asks for {how!r} enumeration; provi sums discrete sites out in parallel only: "
            "mark it infer={'enumerate': 'parallel'} (numpyro.contrib.funsor.config_enumerate does)"
        )
    base = base_distribution(fn)
    if not fn.support.is_discrete or not base.has_enumerate_support:
        raise ModelError(
            f"site {name!r} is marked for enumeration but its {type(base).__name__} distribution has no finite "
            "support to sum over; enumerate only discrete sites (Bernoulli, Categorical, ...)"
        )
    k = int(jnp.shape(base.enumerate_support(expand=False))[0])
    if k > MODEL_ENUMERATE_MAX_SUPPORT:
        raise ModelError(
            f"site {name!r} has {k} support values, more than provi enumerates ({MODEL_ENUMERATE_MAX_SUPPORT}): "
            f"summing it out makes every factor that depends on it {k} times larger. Leave it unenumerated and give "
            "it a guide site with a gradient estimator (provi.estimators.Reinforce(), MVD(), ...)"
        )
    return _latent_site(name, site)


def _concrete_params(model, args, kwargs, params: dict) -> dict:
    """Initial values of `numpyro.param` sites that the model computes (e.g. `jnp.zeros(...)`),
    evaluated by running the model once, compiled."""

    def values(key):
        tr = trace_model(model, args, kwargs, key)
        return {name: tr[name]["value"] for name in params}

    concrete = jax.jit(values)(np.zeros(2, np.uint32))
    return {name: (concrete[name], c) for name, (_, c) in params.items()}


def _is_factor(site: dict) -> bool:
    return type(base_distribution(site["fn"])).__name__ == "Unit"

"""Bound programs: a model or guide program with its current parameters, keys and data, as an
objective receives them; and `ScoreTerm`, the record a non-pathwise draw leaves in a guide's ledger.

`KeyStream` hands out PRNG keys at trace time. `BoundModel` and `BoundGuide` are what `provi.sim`,
`provi.density` and the rest of the vocabulary take; `call_args`, `numpyro_fn` and `trace` run
the NumPyro function behind a bound program (through `provi.core.trace.run`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from provi.core.program import AbstractGuide, AbstractModel
from provi.core.trace import run
from provi.errors import ObjectiveError

__all__ = ["KeyStream", "BoundModel", "BoundGuide", "ScoreTerm", "call_args", "numpyro_fn", "trace"]


class KeyStream:
    """A Python-side supply of fresh PRNG keys, split from one key (trace-time only: jit-safe).

    Given a pair of keys (shape (2, 2), from one split), the first is handed out as it is and the
    rest are split from the second: the common case of one draw per step then costs no split.
    """

    def __init__(self, key):
        key = jnp.asarray(key)
        self._first, self._key = (key[0], key[1]) if key.ndim == 2 else (None, key)

    @property
    def root(self):
        """A key for side streams (e.g. subsample indices), independent of the keys handed out."""
        return jax.random.fold_in(self._key, 0x5EED)

    def __call__(self):
        if self._first is not None:
            first, self._first = self._first, None
            return first
        self._key, sub = jax.random.split(self._key)
        return sub


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreTerm:
    """A score term left by one guide site's draws in one `sim` call.

    `score` is log q of the draws with the draws cut from the gradient, per particle (n,) or, after
    `provi.particle_mean(plate=...)`, per particle and plate element (n, B). Unless an objective
    claims it (`provi.claim_scores`), the surrogate (`provi.estimators.surrogate`) adds its
    gradient times a learning signal: the objective's value less a baseline, or, where the
    objective declared per-particle terms (`signal = (terms, declared)`), the particle's own term.
    `per_element`: the estimator takes per-element signals (a score function with a stateless
    baseline); `features`: the site's distribution parameters (n, rows, F), for network baselines.
    Terms are compared by identity.
    """

    site: str
    estimator: Any
    score: jax.Array
    per_element: bool = False
    features: Any = None
    signal: Any = None


@dataclasses.dataclass
class BoundModel:
    """A model with its data and current parameters, as objectives see it."""

    program: AbstractModel
    params: Any
    keys: KeyStream
    args: tuple
    kwargs: dict
    detached: bool = False

    def current_params(self):
        return jax.lax.stop_gradient(self.params) if self.detached else self.params

    def log_density(self, values, args, kwargs):
        return self.program.log_density(self.current_params(), values, args, kwargs, self.keys)


@dataclasses.dataclass
class BoundGuide:
    """A guide with its current parameters; `ledger` collects the `ScoreTerm`s of non-pathwise
    draws; `branching` is the estimators' state of this objective evaluation (None outside a fit's
    loss, e.g. when drawing results); `step` the number of steps taken so far (None where no
    loop runs); `carried` the objective's running state after the previous step (`{}` at the
    first, None where the objective declares none) and `carried_out` where
    `provi.running_average` leaves this step's; `declared` the per-element terms the objective
    declared (`provi.particle_mean(plate=...)`), which let `Enumerate` re-run it once per support
    value instead of once per value and element (`provi.estimators.surrogate.localise`)."""

    program: AbstractGuide
    params: Any
    consts: Any
    keys: KeyStream
    args: tuple
    kwargs: dict
    ledger: list = dataclasses.field(default_factory=list)
    detached: bool = False
    branching: Any = None
    step: Any = None  # the fit's step counter (a traced int32), where the loss knows it
    carried: Any = None
    carried_out: dict = dataclasses.field(default_factory=dict)
    declared: list = dataclasses.field(default_factory=list)  # [(plate, values, terms (n, B), mean)] of `particle_mean(plate=)`

    def current_params(self):
        return jax.lax.stop_gradient(self.params) if self.detached else self.params

    def log_density(self, values, args, kwargs):
        return self.program.log_density(self.current_params(), self.consts, values, args, kwargs)


def call_args(bound, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments a vocabulary call runs a bound program at: `args` if given, else the bound
    ones; keyword arguments merged over the bound ones."""
    return (args if args else bound.args), {**bound.kwargs, **kwargs}


def numpyro_fn(bound) -> tuple:
    """The bound program's NumPyro function and its constrained `numpyro.param` values; a clear
    error for a family guide, which has no per-site structure."""
    out = bound.program.numpyro_fn(bound.current_params())
    if out is None:
        raise ObjectiveError(
            f"per-site densities need a NumPyro program; {type(bound.program).__name__} is a family over the "
            "whole latent vector. Use a NumPyro guide function, or leave out sites="
        )
    return out


def trace(bound, key, values: dict, args: tuple, kwargs: dict) -> dict:
    """The trace of a bound NumPyro program at `values` (its parameters substituted)."""
    fn, fixed = numpyro_fn(bound)
    return run(fn, key, args, kwargs, {**fixed, **values})

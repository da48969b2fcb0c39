"""The vocabulary of objectives: `sim`, `density`, `detach` and the `@objective` decorator.

Inside an objective, `model` and `guide` are bound programs: they carry the current parameters, a
stream of PRNG keys and the model's data. `sim` draws from a guide; `density` scores values under
the model or a guide. Both vectorise over leading particle axes. Draws from sites whose estimator
is not pathwise leave a score term in the bound guide's ledger; `provi.estimators` turns the ledger
and the objective's value into a surrogate whose gradient is an unbiased gradient estimate.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from provi.errors import ModelError, ObjectiveError

__all__ = ["KeyStream", "BoundModel", "BoundGuide", "sim", "density", "detach", "objective", "Objective"]


class KeyStream:
    """A Python-side supply of fresh PRNG keys, split from one key (trace-time only: jit-safe)."""

    def __init__(self, key):
        self._key = key

    def __call__(self):
        self._key, sub = jax.random.split(self._key)
        return sub


@dataclasses.dataclass
class BoundModel:
    """A model with its data and current parameters, as objectives see it."""

    program: Any  # provi.guides.program.ModelProgram
    params: Any
    keys: KeyStream
    args: tuple
    kwargs: dict

    def log_density(self, values, args, kwargs):
        return self.program.log_density(self.params, values, args, kwargs, self.keys)


@dataclasses.dataclass
class BoundGuide:
    """A guide with its current parameters; `ledger` collects score terms of non-pathwise sites."""

    program: Any  # a provi.guides.program.GuideProgram
    params: Any
    consts: Any
    keys: KeyStream
    args: tuple
    kwargs: dict
    ledger: list = dataclasses.field(default_factory=list)
    detached: bool = False

    def log_density(self, values, args, kwargs):
        params = jax.lax.stop_gradient(self.params) if self.detached else self.params
        return self.program.log_density(params, self.consts, values, args, kwargs)


def _call_args(bound, args, kwargs):
    return (args if args else bound.args), {**bound.kwargs, **kwargs}


def sim(guide: BoundGuide, *args, n: int | None = None, **kwargs):
    """Draw from `guide`: returns `(values, log_q)`.

    `values` maps each latent site to its constrained draw, with a leading axis of length `n` when
    `n` is given (log_q then has shape (n,)); without `n`, one draw and a scalar log_q.
    """
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.sim takes the guide an objective receives as its second argument")
    args, kwargs = _call_args(guide, args, kwargs)
    params = jax.lax.stop_gradient(guide.params) if guide.detached else guide.params
    z, log_q = guide.program.sim(params, guide.consts, guide.keys(), 1 if n is None else n, args, kwargs, guide.ledger)
    if n is None:
        z = jax.tree.map(lambda x: x[0], z)
        log_q = log_q[0]
    return z, log_q


def density(program, values: dict, *args, **kwargs) -> jax.Array:
    """Log density of `values` under a bound model (the log joint, data included) or a bound guide.

    Leading axes of `values` beyond each site's own shape are particle axes: the result has them.
    """
    if not isinstance(program, (BoundModel, BoundGuide)):
        raise TypeError("provi.density takes the model or guide an objective receives")
    if not isinstance(values, dict):
        raise TypeError(f"provi.density takes a dict of site values, got {type(values).__name__}")
    args, kwargs = _call_args(program, args, kwargs)
    return program.log_density(values, args, kwargs)


def detach(guide: BoundGuide) -> BoundGuide:
    """The same guide with its parameters cut from the gradient (for path-derivative estimators)."""
    return dataclasses.replace(guide, detached=True, ledger=guide.ledger)


@dataclasses.dataclass(frozen=True)
class Objective:
    """A variational objective (maximised): `fn(model, guide, *args, **options) -> scalar`.

    Calling an objective with keyword options returns a copy with those options set:
    `provi.ELBO(num_particles=4)`.
    """

    fn: Callable
    options: tuple = ()

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "objective")

    def __call__(self, **options) -> "Objective":
        return dataclasses.replace(self, options=tuple(sorted({**dict(self.options), **options}.items())))

    def value(self, model: BoundModel, guide: BoundGuide) -> jax.Array:
        """One unbiased estimate of the objective (before any estimator surrogate)."""
        out = self.fn(model, guide, *model.args, **dict(self.options))
        if not hasattr(out, "shape") or jnp.shape(out) != ():
            raise ObjectiveError(
                f"objective {self.name!r} must return a scalar, got shape {jnp.shape(out)}; "
                "reduce over particles (e.g. jnp.mean) before returning"
            )
        return out

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options)
        return f"{self.name}({opts})"


def objective(fn: Callable) -> Objective:
    """Turn `fn(model, guide, *args, **options) -> scalar` into an objective `provi.fit` accepts."""
    return Objective(fn)


def require_sites(values: dict, expected: tuple[str, ...], what: str) -> None:
    """Raise a clear error when `values` lacks a site of `expected` or names an unknown one."""
    unknown = sorted(set(values) - set(expected))
    missing = [s for s in expected if s not in values]
    if unknown:
        raise ModelError(f"{what}: unknown site name(s) {unknown}; its sites are {list(expected)}")
    if missing:
        raise ModelError(f"{what}: no value given for site(s) {missing}")

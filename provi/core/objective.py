"""`Objective` and the `@objective` decorator: a variational objective is a program."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from provi.core.bound import BoundGuide, BoundModel
from provi.errors import ObjectiveError

__all__ = ["Objective", "objective"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A variational objective (maximised): `fn(model, guide, *args, **options) -> scalar`.

    Calling an objective with keyword options returns a copy with those options set:
    `provi.ELBO(num_particles=4)`. `carries`: whether it keeps running state from step to step
    (`provi.running_average`), a bool or a function of its options.

    >>> import provi
    >>> provi.ELBO(num_particles=4)
    ELBO(num_particles=4)
    """

    fn: Callable
    options: tuple = ()
    carries: Callable | bool = False

    @property
    def keeps_state(self) -> bool:
        """Whether, with these options, the objective carries state between steps."""
        return bool(self.carries(dict(self.options)) if callable(self.carries) else self.carries)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "objective")  # a functools.partial has no name

    def __call__(self, **options) -> "Objective":
        return dataclasses.replace(self, options=tuple(sorted({**dict(self.options), **options}.items())))

    def value(self, model: BoundModel, guide: BoundGuide) -> jax.Array:
        """One unbiased estimate of the objective (before any estimator surrogate)."""
        out = self.fn(model, guide, *model.args, **dict(self.options))
        if not isinstance(out, jax.Array) or jnp.shape(out) != ():
            raise ObjectiveError(
                f"objective {self.name!r} must return a scalar, got shape {jnp.shape(out)}; "
                "reduce over particles (e.g. jnp.mean) before returning"
            )
        if not isinstance(out, jax.core.Tracer) and not bool(jnp.isfinite(out)):
            raise ObjectiveError(
                f"objective {self.name!r} returned a non-finite value ({float(out)}); check its log "
                "weights (a log density of -inf, or exp() of a large log weight: use logsumexp)"
            )
        return out

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options)
        return f"{self.name}({opts})"


def objective(fn: Callable | None = None, *, carries: Callable | bool = False):
    """Turn `fn(model, guide, *args, **options) -> scalar` into an objective `provi.fit` accepts.
    `@objective(carries=True)` declares one that keeps running averages between steps
    (`provi.running_average`); `carries` may be a function of the options, true for those that do.

    >>> import jax.numpy as jnp, provi
    >>> @provi.objective
    ... def elbo(model, guide, *args, n=1):
    ...     z, log_q = provi.sim(guide, *args, n=n)
    ...     return jnp.mean(provi.density(model, z, *args) - log_q)
    >>> elbo(n=8)
    elbo(n=8)
    """
    if fn is None:
        return lambda f: objective(f, carries=carries)
    if not callable(fn):
        raise TypeError(f"provi.objective decorates a function, got {type(fn).__name__}")
    return Objective(fn, carries=carries)

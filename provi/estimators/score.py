"""The score-function (REINFORCE) estimator and its baselines."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from provi.estimators.base import Estimator

__all__ = ["Reinforce", "Baseline", "NoBaseline", "RunningAverage", "Learned", "LeaveOneOut"]


class Baseline:
    """A control variate subtracted from the objective in a score term (never depends on that draw)."""

    def init_state(self) -> dict:
        return {}


@dataclasses.dataclass(frozen=True)
class NoBaseline(Baseline):
    """Plain REINFORCE: the objective itself multiplies the score."""


@dataclasses.dataclass(frozen=True)
class RunningAverage(Baseline):
    """An exponential moving average of the objective over past steps, with Adam-style debiasing.

    Its state lives in `params["estimators"][site]` and is updated by the fit loop after each
    step (`provi.estimators.update_state`); it receives no gradient.
    """

    decay: float = 0.9

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"RunningAverage: decay must be in [0, 1), got {self.decay!r}")

    def init_state(self) -> dict:
        return {"average": jnp.zeros(()), "weight": jnp.zeros(())}

    def value(self, state):
        w = state["weight"]
        return jnp.where(w > 0, state["average"] / jnp.where(w > 0, w, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class Learned(Baseline):
    """A per-site scalar in `params["estimators"][site]["baseline"]`, trained with the guide's
    parameters to minimise the squared difference to the objective."""

    init: float = 0.0

    def init_state(self) -> dict:
        return {"baseline": jnp.asarray(self.init, dtype=jnp.result_type(float))}


@dataclasses.dataclass(frozen=True)
class LeaveOneOut(Baseline):
    """Leave-one-out across particles: for particle i, the mean over j != i of the objective with
    particle i's draw at this site replaced by particle j's (the rest of the program re-run with
    the same randomness). For an objective that averages per-particle terms this is exactly Kool et
    al.'s (2019) leave-one-out baseline; for any objective it is a valid baseline. It costs n(n-1)
    extra evaluations of the objective; with one particle it is no baseline."""


@dataclasses.dataclass(frozen=True)
class Reinforce(Estimator):
    """The score-function (REINFORCE) estimator: unbiased for any distribution, high variance.

    `baseline`: `NoBaseline()` (default), `RunningAverage(decay)`, `Learned()` or `LeaveOneOut()`.
    """

    baseline: Baseline = NoBaseline()
    pathwise = False
    score_function = True

    def __post_init__(self):
        if not isinstance(self.baseline, Baseline):
            raise TypeError(
                f"Reinforce: baseline must be a provi.estimators baseline object (NoBaseline(), "
                f"RunningAverage(), Learned(), LeaveOneOut()), got {self.baseline!r}"
            )

    def applies(self, fn) -> bool:
        return True

    def draw(self, fn, value, key):
        return jax.lax.stop_gradient(value), None

    def init_state(self) -> dict:
        return self.baseline.init_state()

    @property
    def name(self) -> str:
        return f"Reinforce({type(self.baseline).__name__})"

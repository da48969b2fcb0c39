"""The score-function (REINFORCE) estimator and its baselines."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from provi.core import rand
from provi.core.trace import base_distribution
from provi.estimators.base import Baseline, Estimator

__all__ = ["Reinforce", "Baseline", "NoBaseline", "RunningAverage", "Learned", "LeaveOneOut", "site_features"]


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
    stateless = False

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"RunningAverage: decay must be in [0, 1), got {self.decay!r}")

    def init_state(self, fn=None) -> dict:
        return {"average": jnp.zeros(()), "weight": jnp.zeros(())}

    def update(self, state, value) -> dict:
        """`state` advanced with a step's objective `value` (a non-finite value leaves it)."""
        d, ok = self.decay, jnp.isfinite(value)
        new = {"average": d * state["average"] + (1 - d) * value, "weight": d * state["weight"] + (1 - d)}
        return {k: jnp.where(ok, new[k], state[k]) for k in new}

    def value(self, state):
        w = state["weight"]
        return jnp.where(w > 0, state["average"] / jnp.where(w > 0, w, 1.0), 0.0)


def site_features(fn) -> jax.Array:
    """A site's distribution parameters, one row per element of its batch shape: (rows, F).

    Each floating-point parameter of the base distribution, broadcast over the site's shape, is
    flattened per row (e.g. the encoder's logits of one data point); cut from the gradient."""
    b = base_distribution(fn)
    rows = tuple(fn.batch_shape)
    base_batch = rows + tuple(fn.event_shape)[: len(fn.event_shape) - len(b.event_shape)]
    parts = []
    for name, c in sorted(b.arg_constraints.items()):
        v = vars(b).get(name)  # parameters given, not derived ones (lazy properties)
        if v is None or not jnp.issubdtype(jnp.result_type(v), jnp.floating):
            continue
        ev = jnp.shape(v)[jnp.ndim(v) - c.event_dim :] if c.event_dim else ()
        parts.append(jnp.broadcast_to(v, base_batch + ev).reshape((math.prod(rows), -1)))
    return jax.lax.stop_gradient(jnp.concatenate(parts, axis=-1))


@dataclasses.dataclass(frozen=True)
class Learned(Baseline):
    """A learned baseline in `params["estimators"][site]`, trained with the guide's parameters by
    regression on the objective.

    `hidden=()` (default): one scalar per site, trained to minimise its squared difference to the
    objective. `hidden=(32,)`: input-dependent, as in NVIL (Mnih & Gregor 2014): b = m + s * (sum
    over the site's rows of g(the row's distribution parameters)), where m and s are running
    averages (decay `decay`) of the objective's mean and standard deviation, updated by the fit
    loop, and g is a small tanh network with these hidden sizes, trained to predict the
    standardised objective (`site_features` gives the rows; for an amortised guide, the encoder's
    output for each data point). It depends on what comes before the draw, never on the draw, so
    the estimate stays unbiased; it can track the objective across minibatches, where a scalar
    cannot, as far as the site's parameters tell the rows apart."""

    init: float = 0.0
    hidden: tuple = ()
    decay: float = 0.99
    stateless = False

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"Learned: hidden sizes must be positive, got {self.hidden}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"Learned: decay must be in [0, 1), got {self.decay!r}")

    def init_state(self, fn=None) -> dict:
        if not self.hidden:
            return {"baseline": jnp.asarray(self.init, dtype=jnp.result_type(float))}
        if fn is None:
            raise ValueError("Learned(hidden=...) needs the site's distribution to size its network")
        sizes = (site_features(fn).shape[-1], *self.hidden, 1)
        key = jax.random.PRNGKey(0)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2  # the output layer starts at zero: b = m at first
            w = jnp.zeros((a, b)) if last else rand.normal(jax.random.fold_in(key, i), (a, b)) / math.sqrt(a)
            layers.append({"w": w, "b": jnp.zeros((b,))})
        zero = jnp.zeros(())
        return {"average": zero, "square": zero, "weight": zero, "layers": layers}

    @property
    def needs_features(self) -> bool:
        return bool(self.hidden)

    def _network(self, layers, features):
        h = features
        for i, layer in enumerate(layers):
            h = h @ layer["w"] + layer["b"]
            if i < len(layers) - 1:
                h = jnp.tanh(h)
        return jnp.sum(h[..., 0], axis=-1)

    def predict(self, state, value, features=None):
        """`(baseline, fit)`: the baseline (scalar, or per particle from features (n, rows, F)) and
        the regression term, maximised with the guide's parameters, that trains it on `value`."""
        v = jax.lax.stop_gradient(value)
        if "layers" not in state:
            b = state["baseline"]
            return b, -0.5 * jnp.mean((v - b) ** 2)
        w, a, sq = (jax.lax.stop_gradient(state[k]) for k in ("weight", "average", "square"))
        safe = jnp.where(w > 0, w, 1.0)
        m = jnp.where(w > 0, a / safe, 0.0)
        sd = jnp.where(w > 0, jnp.sqrt(jnp.maximum(sq / safe - m**2, 1e-12)), 1.0)
        g = self._network(state["layers"], features)
        return jax.lax.stop_gradient(m + sd * g), -0.5 * jnp.mean(((v - m) / sd - g) ** 2)

    def update(self, state, value) -> dict:
        """The running moments of `state` (a network baseline's) advanced with a step's objective `value`."""
        d, ok = self.decay, jnp.isfinite(value)
        new = {
            "average": d * state["average"] + (1 - d) * value,
            "square": d * state["square"] + (1 - d) * value**2,
            "weight": d * state["weight"] + (1 - d),
        }
        return {k: jnp.where(ok, new[k], state[k]) for k in new}


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

    `baseline`: `NoBaseline()` (default), `RunningAverage(decay)`, `Learned()` (a scalar, or
    `Learned(hidden=(32,))` a network of the site's parameters) or `LeaveOneOut()`.
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

    def init_state(self, fn=None) -> dict:
        return self.baseline.init_state(fn)

    @property
    def name(self) -> str:
        return f"Reinforce({type(self.baseline).__name__})"

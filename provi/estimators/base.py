"""Gradient estimators: pure descriptions of how a guide site's draw carries gradient.

An estimator is a frozen dataclass; it never runs anything itself. The shared transformation in
`provi.estimators.hook` applies it at the guide's sample statement (so that later guide sites see
the transformed value) and leaves per particle a value, log q and, for non-pathwise estimators, a
`provi.core.bound.ScoreTerm`; estimators that need the objective at other values of the site
(`Enumerate`, `MVD`, the leave-one-out baseline) file a *branch request*, and
`provi.estimators.surrogate` evaluates those branches and builds the surrogate.

Estimator hooks, all pure functions of the site's distribution `fn`, its drawn `value` and a key:
  - `draw(fn, value, key) -> (value, score | None)`: the value the rest of the program sees, and
    a score term (a log density whose gradient times the objective is added to the gradient);
  - `branches(fn, value, key) -> (values (R, *shape), coords (R,), weights (R,))` for branching
    estimators: the site's value with flat coordinate `coords[r]` set from `values[r]`, and a
    differentiable weight whose gradient, times the objective at that value, is the estimate.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from provi.core.trace import base_distribution

__all__ = ["Estimator", "Baseline", "dist_name"]


class Baseline:
    """A control variate subtracted from the objective in a score term (never depends on that draw)."""

    stateless: ClassVar[bool] = True  # keeps no running state (so per-element signals may replace it)
    needs_features: ClassVar[bool] = False  # predicts from the site's distribution parameters

    def init_state(self, fn=None) -> dict:
        return {}


class Estimator(abc.ABC):
    """How the gradient flows through one guide site's draw (an abstract, frozen description)."""

    pathwise: ClassVar[bool] = True  # the value carries the gradient
    biased: ClassVar[bool] = False  # the estimate is biased (relaxations): flagged in diagnostics
    branching: ClassVar[bool] = False  # needs the objective at other values of the site
    score_function: ClassVar[bool] = False  # the site's own log q is a score term (REINFORCE)
    baseline: Baseline | None = None  # the score term's control variate (score-function estimators)

    @abc.abstractmethod
    def applies(self, fn) -> bool:
        """Whether this estimator can handle distribution `fn`."""

    def draw(self, fn, value, key):
        """`(value, score)`: the value the rest of the program sees, and a score term or None."""
        return value, None

    def branches(self, fn, value, key):
        """For branching estimators: `(values (R, *shape), coords (R,), weights (R,))`."""
        raise NotImplementedError

    def init_state(self, fn=None) -> dict:
        """Explicit state this estimator keeps in `params["estimators"][site]` (learned baselines);
        `fn` is the site's distribution as traced at build time."""
        return {}

    @property
    def element_signals(self) -> bool:
        """Whether the site's score may take a per-plate-element learning signal
        (`provi.particle_mean(plate=...)`): a score function whose baseline keeps no state."""
        return self.score_function and (self.baseline is None or self.baseline.stateless)

    @property
    def name(self) -> str:
        return type(self).__name__

    def why_not(self, fn) -> str:
        """Why the estimator does not apply to `fn` (for error messages)."""
        return ""


def dist_name(fn) -> str:
    return type(base_distribution(fn)).__name__

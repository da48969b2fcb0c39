"""Gradient estimators: pure descriptions of how a guide site's draw carries gradient.

An estimator is a frozen dataclass; it never runs anything itself. The shared transformation in
`provi.estimators.hook` applies it at the guide's sample statement (so that later guide sites see
the transformed value) and returns per particle `(value, log_q, score)` plus, for estimators that
need the objective at other values of the site (`Enumerate`, `MVD`, the leave-one-out baseline),
a *branch request*; `provi.estimators.branch` evaluates those branches and combines them.

Estimator hooks, all pure functions of the site's distribution `fn`, its drawn `value` and a key:
  - `draw(fn, value, key) -> (value, score | None)`: the value the rest of the program sees, and
    a score term (a log density whose gradient times the objective is added to the gradient);
  - `branches(fn, value, key) -> (values (R, *shape), coords (R,), weights (R,))` for branching
    estimators: the site's value with flat coordinate `coords[r]` set from `values[r]`, and a
    differentiable weight whose gradient, times the objective at that value, is the estimate.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from provi.core.model import base_distribution
from provi.errors import EstimatorError

__all__ = ["Estimator", "resolve", "site_draw", "surrogate", "site_log_prob", "dist_name"]


class Estimator(abc.ABC):
    """How the gradient flows through one guide site's draw (an abstract, frozen description)."""

    pathwise: ClassVar[bool] = True  # the value carries the gradient
    biased: ClassVar[bool] = False  # the estimate is biased (relaxations): flagged in diagnostics
    branching: ClassVar[bool] = False  # needs the objective at other values of the site
    score_function: ClassVar[bool] = False  # the site's own log q is a score term (REINFORCE)

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
    def name(self) -> str:
        return type(self).__name__

    def why_not(self, fn) -> str:
        """Why the estimator does not apply to `fn` (for error messages)."""
        return ""


def dist_name(fn) -> str:
    return type(base_distribution(fn)).__name__


def site_log_prob(site, value, scaled: bool = True):
    """A site's log density at `value`, summed over its shape and scaled as NumPyro scales it
    (`scaled=False`: the draw's own log density, as a score function needs; a subsample or scale
    handler scales the objective's terms, not the score)."""
    lp = site["fn"].log_prob(value)
    if scaled and site.get("scale") is not None:
        lp = lp * site["scale"]
    return jnp.sum(lp)


def resolve(name: str, site: dict, chosen: dict | None) -> Estimator:
    """The estimator for guide site `name`: fit-time choice, then the site's `infer`, then the default."""
    from provi.estimators.registry import applicable, default_estimator

    fn = site["fn"]
    est = (chosen or {}).get(name) or site["infer"].get("estimator") or default_estimator(fn, site["value"])
    if isinstance(est, type) and issubclass(est, Estimator):
        raise EstimatorError(f"site {name!r}: pass an estimator object, e.g. {est.__name__}(), not the class")
    if isinstance(est, str) or not isinstance(est, Estimator):
        raise EstimatorError(
            f"site {name!r}: estimators are objects from provi.estimators (e.g. provi.estimators.Reparam()), got {est!r}"
        )
    if not est.applies(fn):
        why = est.why_not(fn)
        raise EstimatorError(
            f"site {name!r}: {est.name} does not apply to its {dist_name(fn)} distribution"
            + (f" ({why})" if why else "")
            + f"; estimators that do: {', '.join(applicable(fn))}"
        )
    return est


def site_draw(name: str, site: dict, est: Estimator, key=None):
    """`(value, log_q, score)` of a traced guide site under estimator `est` (no branching)."""
    key = jax.random.PRNGKey(0) if key is None else key
    value, score = est.draw(site["fn"], site["value"], key)
    lq = site_log_prob(site, value)
    return value, lq, (site_log_prob(site, value, scaled=False) if est.score_function else score)


def surrogate(value: jax.Array, ledger: list, baselines: dict | None = None, signals: dict | None = None) -> jax.Array:
    """A scalar with `value`'s value whose gradient adds each score term times its learning signal.

    Each ledger entry's learning signal is the objective `value` less its baseline, where
    `baselines` maps `id(score)` to a per-particle baseline (n,) that must not depend on its
    particle's draw; where `signals` maps `id(score)` to `(f, declared)`, terms f of shape (n,)
    or (n, B) (per particle, or per particle and plate element, as the score) and the part of the
    objective they make up, entry (i, ...)'s signal is value - declared plus (f_i - baseline_i) / n.
    """
    out = value
    sv = jax.lax.stop_gradient(value)
    for _name, _est, score in ledger:
        b = (baselines or {}).get(id(score))
        f = (signals or {}).get(id(score))
        if f is not None:
            f, declared = jax.lax.stop_gradient(f)
            coef = (sv - declared) + (f - (0.0 if b is None else b)) / f.shape[0]
            out = out + jnp.sum(jax.lax.stop_gradient(coef) * (score - jax.lax.stop_gradient(score)))
        elif b is None:
            s = jnp.sum(score)
            out = out + sv * (s - jax.lax.stop_gradient(s))
        else:
            out = out + jnp.sum(jax.lax.stop_gradient(sv - b) * (score - jax.lax.stop_gradient(score)))
    return out

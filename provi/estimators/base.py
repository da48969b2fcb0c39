"""Gradient estimators: pure descriptions of how a guide site's draw carries gradient.

`site_draw` turns a traced guide site into `(value, log_q, score)`: a pathwise estimator keeps the
value differentiable; a score-function estimator cuts the value from the gradient and returns the
site's log q as a score term, which `surrogate` multiplies by the objective's value.
"""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp

from provi.core.model import base_distribution
from provi.errors import EstimatorError

__all__ = ["Estimator", "Reparam", "Reinforce", "resolve", "site_draw", "surrogate", "site_log_prob"]


class Estimator(abc.ABC):
    """How the gradient flows through one guide site's draw."""

    pathwise: bool = True

    def applies(self, fn) -> bool:
        """Whether this estimator can handle distribution `fn`."""
        return True

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclasses.dataclass(frozen=True)
class Reparam(Estimator):
    """Pathwise (reparameterization) gradients through the distribution's own sampler."""

    pathwise = True

    def applies(self, fn) -> bool:
        return bool(fn.has_rsample)


@dataclasses.dataclass(frozen=True)
class Reinforce(Estimator):
    """The score-function (REINFORCE) estimator: unbiased for any distribution, high variance."""

    pathwise = False


def site_log_prob(site, value):
    """A site's log density at `value`, summed over its shape and scaled as NumPyro scales it."""
    lp = site["fn"].log_prob(value)
    if site.get("scale") is not None:
        lp = lp * site["scale"]
    return jnp.sum(lp)


def default_estimator(fn) -> Estimator:
    """Reparam where the distribution has a reparameterized sampler, else Reinforce."""
    return Reparam() if fn.has_rsample else Reinforce()


def resolve(name: str, site: dict, chosen: dict | None) -> Estimator:
    """The estimator for guide site `name`: fit-time choice, then the site's `infer`, then the default."""
    est = (chosen or {}).get(name) or site["infer"].get("estimator") or default_estimator(site["fn"])
    if isinstance(est, str) or not isinstance(est, Estimator):
        raise EstimatorError(
            f"site {name!r}: estimators are objects from provi.estimators (e.g. provi.estimators.Reparam()), got {est!r}"
        )
    fn = site["fn"]
    if not est.applies(fn):
        from provi.estimators import applicable

        raise EstimatorError(
            f"site {name!r}: {est.name} does not apply to its {type(base_distribution(fn)).__name__} distribution; "
            f"estimators that do: {', '.join(applicable(fn))}"
        )
    return est


def site_draw(name: str, site: dict, est: Estimator):
    """`(value, log_q, score)` of a traced guide site under estimator `est`."""
    if est.pathwise:
        return site["value"], site_log_prob(site, site["value"]), None
    value = jax.lax.stop_gradient(site["value"])
    lq = site_log_prob(site, value)
    return value, lq, lq


def surrogate(value: jax.Array, ledger: list) -> jax.Array:
    """A scalar with `value`'s value whose gradient adds each score term times the objective."""
    out = value
    for _name, _est, score in ledger:
        s = jnp.sum(score)
        out = out + jax.lax.stop_gradient(value) * (s - jax.lax.stop_gradient(s))
    return out

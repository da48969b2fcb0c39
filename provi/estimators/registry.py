"""The registry of estimator classes, which apply to a distribution, each site's default, and
`resolve`: the estimator a guide site gets."""

from __future__ import annotations

import jax.numpy as jnp

from provi.defaults import MAX_BRANCHES, MAX_ENUMERATE
from provi.errors import EstimatorError
from provi.estimators.base import Estimator, dist_name
from provi.estimators.enumerate import Enumerate, event_size, support_size
from provi.estimators.mvd import MVD
from provi.estimators.relax import GumbelSoftmax
from provi.estimators.reparam import ImplicitReparam, RejectionReparam, Reparam
from provi.estimators.score import LeaveOneOut, Reinforce

__all__ = ["REGISTRY", "applicable", "default_estimator", "resolve"]

REGISTRY = (Reparam, ImplicitReparam, RejectionReparam, Reinforce, Enumerate, MVD, GumbelSoftmax)


def applicable(fn) -> list[str]:
    """Names of the registered estimators that apply to distribution `fn`.

    >>> import numpyro.distributions as dist
    >>> applicable(dist.Bernoulli(0.3))
    ['Reinforce', 'Enumerate', 'MVD', 'GumbelSoftmax']
    """
    return [cls.__name__ for cls in REGISTRY if cls().applies(fn)]


def default_estimator(fn, value=None) -> Estimator:
    """`Reparam` where the distribution has a reparameterized sampler; else `Enumerate` for
    supports of at most `provi.defaults.MAX_ENUMERATE` values on sites of at most `MAX_BRANCHES`
    (coordinates x values), as Enumerate re-runs the objective once per coordinate and value;
    else `Reinforce` with a leave-one-out baseline (which needs several particles, e.g.
    `ELBO(num_particles=4)`, to have any effect)."""
    if fn.has_rsample:
        return Reparam()
    k = support_size(fn)
    m = 1 if value is None else max(1, int(jnp.size(value)) // event_size(fn))
    if k is not None and k <= MAX_ENUMERATE and k * m <= MAX_BRANCHES:
        return Enumerate()
    return Reinforce(baseline=LeaveOneOut())


def resolve(name: str, site: dict, chosen: dict | None) -> Estimator:
    """The estimator for guide site `name`: fit-time choice, then the site's `infer`, then the default."""
    fn = site["fn"]
    est = (chosen or {}).get(name) or site["infer"].get("estimator") or default_estimator(fn, site["value"])
    if isinstance(est, type) and issubclass(est, Estimator):
        raise EstimatorError(f"site {name!r}: pass an estimator object, e.g. {est.__name__}(), not the class")
    if not isinstance(est, Estimator):
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

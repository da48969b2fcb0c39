"""The registry of estimator classes, which apply to a distribution, and each site's default."""

from __future__ import annotations

import jax.numpy as jnp

from provi.estimators.enumerate import Enumerate, event_size, support_size
from provi.estimators.mvd import MVD
from provi.estimators.relax import GumbelSoftmax
from provi.estimators.reparam import ImplicitReparam, RejectionReparam, Reparam
from provi.estimators.score import LeaveOneOut, Reinforce

__all__ = ["REGISTRY", "applicable", "default_estimator", "DEFAULT_MAX_ENUMERATE"]

REGISTRY = (Reparam, ImplicitReparam, RejectionReparam, Reinforce, Enumerate, MVD, GumbelSoftmax)
DEFAULT_MAX_ENUMERATE = 16  # the default enumerates supports of at most this many values
DEFAULT_MAX_BRANCHES = 256  # ... and sites of at most this many (coordinates x support values)


def applicable(fn) -> list[str]:
    """Names of the registered estimators that apply to distribution `fn`."""
    return [cls.__name__ for cls in REGISTRY if cls().applies(fn)]


def default_estimator(fn, value=None):
    """`Reparam` where the distribution has a reparameterized sampler; else `Enumerate` for
    supports of at most 16 values on sites of at most 256 (coordinates x values), as Enumerate
    re-runs the objective once per coordinate and value; else `Reinforce` with a leave-one-out
    baseline (which needs several particles, e.g. `ELBO(num_particles=4)`, to have any effect)."""
    if fn.has_rsample:
        return Reparam()
    k = support_size(fn)
    m = 1 if value is None else max(1, int(jnp.size(value)) // event_size(fn))
    if k is not None and k <= DEFAULT_MAX_ENUMERATE and k * m <= DEFAULT_MAX_BRANCHES:
        return Enumerate()
    return Reinforce(baseline=LeaveOneOut())

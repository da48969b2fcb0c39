"""The registry of estimator classes, which apply to a distribution, and each site's default."""

from __future__ import annotations

from provi.estimators.enumerate import Enumerate, support_size
from provi.estimators.mvd import MVD
from provi.estimators.relax import GumbelSoftmax
from provi.estimators.reparam import ImplicitReparam, RejectionReparam, Reparam
from provi.estimators.score import LeaveOneOut, Reinforce

__all__ = ["REGISTRY", "applicable", "default_estimator", "DEFAULT_MAX_ENUMERATE"]

REGISTRY = (Reparam, ImplicitReparam, RejectionReparam, Reinforce, Enumerate, MVD, GumbelSoftmax)
DEFAULT_MAX_ENUMERATE = 16  # the default enumerates supports of at most this many values


def applicable(fn) -> list[str]:
    """Names of the registered estimators that apply to distribution `fn`."""
    return [cls.__name__ for cls in REGISTRY if cls().applies(fn)]


def default_estimator(fn, value=None):
    """`Reparam` where the distribution has a reparameterized sampler; else `Enumerate` for
    supports of at most 16 values; else `Reinforce` with a leave-one-out baseline."""
    if fn.has_rsample:
        return Reparam()
    k = support_size(fn)
    if k is not None and k <= DEFAULT_MAX_ENUMERATE:
        return Enumerate()
    return Reinforce(baseline=LeaveOneOut())

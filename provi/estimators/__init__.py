"""Per-site gradient estimators (`infer={"estimator": ...}` or `provi.fit(..., estimators=...)`).

Typed, frozen descriptions; the shared transformation that applies them is `hook` (at the guide's
sample statements) and `branch` (objective re-evaluation for Enumerate, MVD, leave-one-out).
"""

from provi.estimators.base import Estimator, resolve, site_draw, surrogate
from provi.estimators.branch import combine, init_states, update_state
from provi.estimators.enumerate import Enumerate
from provi.estimators.mvd import MVD
from provi.estimators.registry import REGISTRY, applicable, default_estimator
from provi.estimators.relax import GumbelSoftmax
from provi.estimators.reparam import ImplicitReparam, RejectionReparam, Reparam
from provi.estimators.score import Baseline, LeaveOneOut, Learned, NoBaseline, Reinforce, RunningAverage

__all__ = [
    "Estimator",
    "Reparam",
    "ImplicitReparam",
    "RejectionReparam",
    "Reinforce",
    "Baseline",
    "NoBaseline",
    "RunningAverage",
    "Learned",
    "LeaveOneOut",
    "Enumerate",
    "MVD",
    "GumbelSoftmax",
    "REGISTRY",
    "applicable",
    "default_estimator",
    "resolve",
    "site_draw",
    "surrogate",
    "combine",
    "init_states",
    "update_state",
]

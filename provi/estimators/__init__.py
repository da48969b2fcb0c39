"""Per-site gradient estimators (`infer={"estimator": ...}` or `provi.fit(..., estimators=...)`).

Floor 3 (a sibling of `provi.guides` and `provi.objectives`; may use `provi.distributions`, the
core and floor 1). Estimators are typed, frozen descriptions (`base`, `reparam`, `score`,
`enumerate`, `mvd`, `relax`; `registry` chooses and checks them). `hook` applies them at the
guide's sample statements, `branch` holds the bookkeeping of objective re-evaluations (Enumerate,
MVD, leave-one-out), and `surrogate` owns the surrogate whose gradient is the estimate.
"""

from provi.estimators.base import Baseline, Estimator
from provi.estimators.enumerate import Enumerate
from provi.estimators.mvd import MVD
from provi.estimators.registry import REGISTRY, applicable, default_estimator, resolve
from provi.estimators.relax import GumbelSoftmax
from provi.estimators.reparam import ImplicitReparam, LocalReparam, RejectionReparam, Reparam
from provi.estimators.score import LeaveOneOut, Learned, NoBaseline, Reinforce, RunningAverage
from provi.estimators.surrogate import combine, init_states, surrogate, update_state

__all__ = [
    "Estimator",
    "Reparam",
    "LocalReparam",
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
    "surrogate",
    "combine",
    "init_states",
    "update_state",
]

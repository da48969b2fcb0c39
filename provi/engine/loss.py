"""The loss a fit differentiates: one objective evaluation turned into a surrogate."""

from __future__ import annotations

from typing import Callable

import jax

from provi.core.bound import BoundGuide, BoundModel, KeyStream
from provi.core.local import LocalMoments
from provi.core.objective import Objective
from provi.core.plates import SUBSAMPLE_TAG, SharedSubsample
from provi.core.vocab import in_plate
from provi.core.program import AbstractGuide, AbstractModel
from provi.engine.layout import join_data
from provi.estimators.branch import BranchState
from provi.estimators.surrogate import combine, localise

__all__ = ["make_loss"]


def make_loss(model: AbstractModel, guide: AbstractGuide, objective: Objective, layout, with_carried: bool = False) -> Callable:
    """`loss(params, consts, key, data, step=None) -> (surrogate loss to differentiate, objective
    value)`; `step`, the steps taken so far, is what `provi.step_count` gives the objective. With
    `with_carried`, the second item is `(objective value, carried)`, `carried` the running averages
    the objective leaves (`provi.running_average`; `{}` for an objective that declares none), which
    the next step reads from `params["objective"]`. Without `step` (no loop: an evaluation) an
    objective's running averages start afresh.

    The objective runs once; estimators that need it at other values of a site (Enumerate, MVD,
    leave-one-out baselines) have it re-run under vmap with the same key and the site's value
    overridden through the bound guide (`provi.estimators.branch`), and
    `provi.estimators.surrogate.combine` builds the surrogate from the value, the ledger's score
    terms and those branches. `key` is one PRNG key or a pair (see `provi.core.bound.KeyStream`).
    """

    def run(params, consts, key, data, state, step):
        args, kwargs = join_data(data, layout)
        keys = KeyStream(key)
        bound_model = BoundModel(model, params["model"], keys, args, kwargs)
        bound_guide = BoundGuide(guide, params["guide"], consts, keys, args, kwargs, branching=state, step=step,
                                 carried=params.get("objective", {}) if objective.keeps_state and step is not None else None)
        # one set of plate indices per step; LocalReparam sites' moments for the model's dense layers
        with SharedSubsample(key=jax.random.fold_in(keys.root, SUBSAMPLE_TAG)), LocalMoments(guide.local_moments(params["guide"], consts)):
            value = objective.value(bound_model, bound_guide)
        return value, bound_guide

    def loss(params, consts, key, data, step=None):
        state = BranchState()
        value, bound = run(params, consts, key, data, state, step)
        # per-element terms count where the objective drew once and returned their declared mean (ELBO(plate=...))
        declared = bound.declared if state.calls == 1 and bound.declared and bound.declared[-1][3] is value else []
        state.requests[:] = localise(state.requests, declared, lambda site, plate, values: in_plate(bound, values, site, plate))

        def rerun(override):
            v, b = run(params, consts, key, data, BranchState(override=override, collect=False), step)
            return v, (b.declared[-1][2] if b.declared else None)

        surr = combine(value, bound.ledger, state, rerun, params.get("estimators", {}))
        carried = bound.carried_out
        return -surr, ((value, carried) if with_carried else value)

    return loss

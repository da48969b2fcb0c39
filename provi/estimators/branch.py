"""Branching: the objective re-evaluated at other values of a site, one shared mechanism.

`Enumerate`, `MVD` and the `LeaveOneOut` baseline need the rest of the objective program at other
values of one site: all K support values of a coordinate, the MVD's positive and negative
couplings, or another particle's draw. The loss driver (`provi.loop.make_loss`) first runs the
objective once, collecting *requests* (`Request`: which `sim` call, site, particle, flat
coordinate and value, with a weight). It then runs the whole objective again under `jax.vmap`
over each request's overrides: the bound guide carries an `Override`, the guide's site hook
patches that particle's coordinate before later guide sites run, and the same PRNG keys make
every other draw identical. The results, cut from the gradient, are combined by `combine`:

  weights:  surrogate += Σ_b (w_b - sg w_b) · sg(F_b)        (Enumerate: w = q(k); MVD: ±c·θ)
  loo:      the score term of particle i uses F - mean_{j≠i} F(i's draw := j's draw)

The gradient of the main run (pathwise parts, other sites' score terms) is kept as is, so the
estimate is unbiased: E[∇F] plus, per branching coordinate, the exact (Enumerate) or
measure-valued (MVD) derivative through that coordinate's distribution. Costs: one objective
evaluation per branch, vectorised; several branching sites cost the sum of their branches.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from provi.estimators.base import surrogate
from provi.estimators.score import Learned, LeaveOneOut, RunningAverage

__all__ = ["Override", "Request", "BranchState", "Branching", "combine", "init_states", "update_state"]

sg = jax.lax.stop_gradient


class Override(NamedTuple):
    """In `sim` call `call`, set flat coordinate `coord` (all if < 0) of `particle`'s `site` to `value`."""

    call: int
    site: str
    particle: Any
    coord: Any
    value: Any


class Request(NamedTuple):
    """Branches to evaluate for one site of one `sim` call (leading axis B on array fields)."""

    call: int
    site: str
    estimator: Any
    kind: str  # "weights" or "loo"
    particle: Any
    coord: Any
    values: Any
    weights: Any
    score: Any  # the ledger score of a "loo" request


@dataclasses.dataclass
class BranchState:
    """Trace-time bookkeeping of one objective evaluation: the override in force (branch runs),
    the requests collected (main run) and a counter of `sim` calls."""

    override: Override | None = None
    collect: bool = True
    requests: list = dataclasses.field(default_factory=list)
    features: dict = dataclasses.field(default_factory=dict)  # id(score) -> (n, rows, F) for network baselines
    calls: int = 0

    def next_call(self) -> int:
        self.calls += 1
        return self.calls - 1


@dataclasses.dataclass(frozen=True, eq=False)
class Branching:
    """A guide program seen through a `BranchState`: `sim` passes the state to the program's site
    hook (programs without one, the Gaussian families, have only pathwise sites)."""

    program: Any
    state: BranchState

    def sim(self, params, consts, key, n, args, kwargs, ledger):
        if getattr(self.program, "branchable", False):
            return self.program.sim(params, consts, key, n, args, kwargs, ledger, branching=self.state)
        return self.program.sim(params, consts, key, n, args, kwargs, ledger)

    def __getattr__(self, name):
        return getattr(self.program, name)


def combine(value, ledger, state: BranchState, rerun: Callable, est_params: dict, signals: dict | None = None):
    """The surrogate of one objective evaluation: `value` plus the score terms of `ledger`, the
    requests' branch terms (`rerun(override) -> objective value`) and baseline regressions.

    `signals` maps `id(score)` of a ledger entry to `(f, declared)`: terms f, per particle (n,) or
    per particle and plate element (n, B), whose mean over particles the objective declared
    (`provi.particle_mean`): entry i then gets the learning signal (value - declared) +
    (f_i - b_i) / n, b_i its baseline for f_i (leave-one-out: the other particles' f), instead of
    value - b_i.
    """
    signals = signals or {}
    baselines, extra = {}, 0.0
    live = {id(s) for _, _, s in ledger}
    for r in state.requests:
        if r.kind == "loo" and (id(r.score) not in live or id(r.score) in signals):
            continue  # claimed by the objective (e.g. VIMCO), or computed from the signals below
        f = jax.vmap(lambda p, c, v, r=r: sg(rerun(Override(r.call, r.site, p, c, v))))(r.particle, r.coord, r.values)
        if r.kind == "weights":
            extra = extra + jnp.sum((r.weights - sg(r.weights)) * f)
        else:
            n = r.score.shape[0]
            baselines[id(r.score)] = jnp.mean(f.reshape(n, n - 1), axis=1)
    for name, est, score in ledger:
        terms = signals.get(id(score), (None,))[0]
        target = value if terms is None else terms  # what the baseline predicts
        if id(score) in baselines:
            continue
        base = getattr(est, "baseline", None)
        st = est_params.get(name)
        if isinstance(base, LeaveOneOut) and terms is not None and terms.shape[0] > 1:
            n = terms.shape[0]
            baselines[id(score)] = sg((jnp.sum(terms, axis=0) - terms) / (n - 1))
        elif isinstance(base, RunningAverage) and st:
            baselines[id(score)] = jnp.broadcast_to(sg(base.value(st)), score.shape)
        elif isinstance(base, Learned) and st:
            b, fit = base.predict(st, target, state.features.get(id(score)))  # fit trains b on the target
            baselines[id(score)] = jnp.broadcast_to(sg(b), score.shape)
            extra = extra + (fit - sg(fit))
    return surrogate(value, ledger, baselines, signals) + extra


def init_states(program) -> dict:
    """Explicit estimator state for `params["estimators"]`: {site: state} for sites that keep any."""
    ests = getattr(program, "estimators", None) or {}
    fns = getattr(program, "site_fns", None) or {}
    return {name: st for name, est in ests.items() if (st := est.init_state(fns.get(name)))}


def update_state(program, old: dict, new: dict, value) -> dict:
    """After an optimiser step: advance running averages (and the running moments of network
    baselines) with the step's objective `value`."""
    if "estimators" not in new:
        return new
    states = dict(new["estimators"])
    for name, est in (getattr(program, "estimators", None) or {}).items():
        base = getattr(est, "baseline", None)
        if isinstance(base, RunningAverage) and name in states:
            states[name] = base.update(old["estimators"][name], value)
        elif isinstance(base, Learned) and "layers" in states.get(name, {}):
            states[name] = {**states[name], **base.update(old["estimators"][name], value)}
    return {**new, "estimators": states}

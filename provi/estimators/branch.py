"""Branching: the objective re-evaluated at other values of a site, one shared mechanism.

`Enumerate`, `MVD` and the `LeaveOneOut` baseline need the rest of the objective program at other
values of one site: all K support values of a coordinate, the MVD's positive and negative
couplings, or another particle's draw. The loss (`provi.engine.loss.make_loss`) first runs the
objective once, collecting *requests* (`Request`: which `sim` call, site, particle, flat
coordinate and value, with a weight). It then runs the whole objective again under `jax.vmap`
over each request's overrides: the bound guide carries a `BranchState` with an `Override`, the
guide's site hook patches that particle's coordinate before later guide sites run, and the same
PRNG keys make every other draw identical. `provi.estimators.surrogate.combine` turns the results,
cut from the gradient, into the surrogate:

  weights:  surrogate += sum_b (w_b - sg w_b) * sg(F_b)        (Enumerate: w = q(k); MVD: +-c*theta)
  loo:      the score term of particle i uses F - mean_{j != i} F(i's draw := j's draw)

The gradient of the main run (pathwise parts, other sites' score terms) is kept as is, so the
estimate is unbiased: E[grad F] plus, per branching coordinate, the exact (Enumerate) or
measure-valued (MVD) derivative through that coordinate's distribution. Costs: one objective
evaluation per branch, vectorised; several branching sites cost the sum of their branches.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

__all__ = ["Override", "Request", "BranchState"]


class Override(NamedTuple):
    """In `sim` call `call`, set flat coordinate `coord` (all if < 0) of `particle`'s `site` to `value`."""

    call: int
    site: str
    particle: Any
    coord: Any
    value: Any


class Request(NamedTuple):
    """Branches to evaluate for one site of one `sim` call (leading axis B on array fields).

    `kind` is "weights" (Enumerate, MVD: `weights` carry the gradient), "loo" (a leave-one-out
    baseline for the score term `term`) or "local" (Enumerate in a plate whose per-element terms
    the objective declared: each branch sets every coordinate to one support value, and `weights`
    (B, coordinates) meet the per-element terms, times `norm`). `size`: coordinates per particle."""

    call: int
    site: str
    estimator: Any
    kind: str
    particle: Any
    coord: Any
    values: Any
    weights: Any
    term: Any  # the ScoreTerm of a "loo" request
    size: int = 0
    norm: Any = 1.0


@dataclasses.dataclass
class BranchState:
    """Trace-time bookkeeping of one objective evaluation: the override in force (branch runs),
    the requests collected (main run) and a counter of `sim` calls."""

    override: Override | None = None
    collect: bool = True
    requests: list = dataclasses.field(default_factory=list)
    calls: int = 0

    def next_call(self) -> int:
        self.calls += 1
        return self.calls - 1

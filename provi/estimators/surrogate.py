"""The surrogate: one scalar whose gradient is the objective's gradient estimate.

`combine` is the one place that turns an objective evaluation (its value, the guide's ledger of
`ScoreTerm`s and the branch requests of its estimators) into the surrogate the loss
differentiates; `surrogate` adds the score terms' learning signals; `init_states` and
`update_state` keep the estimators' explicit state (running averages, learned baselines).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from provi.core.program import AbstractGuide
from provi.estimators.branch import BranchState, Override, Request
from provi.estimators.enumerate import Enumerate
from provi.estimators.score import Learned, LeaveOneOut, RunningAverage

__all__ = ["surrogate", "combine", "localise", "init_states", "update_state"]

sg = jax.lax.stop_gradient


def surrogate(value: jax.Array, ledger: list, baselines: dict | None = None) -> jax.Array:
    """A scalar with `value`'s value whose gradient adds each score term times its learning signal.

    Term i's learning signal is the objective `value` less its baseline `baselines[i]` (per
    particle, (n,); it must not depend on its particle's draw). Where the term carries declared
    per-particle terms (`ScoreTerm.signal = (f, declared)`, f of shape (n,) or (n, B) as the
    score), entry (j, ...)'s signal is value - declared plus (f_j - baseline_j) / n.
    """
    out = value
    sv = sg(value)
    for i, term in enumerate(ledger):
        b, score = (baselines or {}).get(i), term.score
        if term.signal is not None:
            f, declared = sg(term.signal)
            coef = (sv - declared) + (f - (0.0 if b is None else b)) / f.shape[0]
            out = out + jnp.sum(sg(coef) * (score - sg(score)))
        elif b is None:
            s = jnp.sum(score)
            out = out + sv * (s - sg(s))
        else:
            out = out + jnp.sum(sg(sv - b) * (score - sg(score)))
    return out


def localise(requests: list, declared: list, in_plate: Callable) -> list:
    """`requests` with those of `Enumerate` sites in the plate of the objective's declared
    per-element terms (`declared`: [(plate, values, terms (n, B), mean)], `provi.particle_mean`) made
    "local": K branches per particle, each setting all B coordinates to one support value, in
    place of B x K that each set one. `in_plate(site, plate, values)` says whether a site lies in
    the plate; a site with other than one coordinate per element keeps its requests.

    Exact, not only in expectation: coordinate b's enumerated gradient is
    sum_k grad q_b(k) F(c_b = k, c_-b), and with the plate's elements conditionally independent
    (as `particle_mean(plate=)` assumes) F(c_b = k, c_-b) is element b's term at k plus terms that
    do not depend on c_b, whose sum against sum_k grad q_b(k) = 0 vanishes."""
    if not declared:
        return requests
    plate, values, terms, _ = declared[-1]
    n, b = terms.shape
    out = []
    for r in requests:
        if r.kind != "weights" or not isinstance(r.estimator, Enumerate) or r.size != b or not in_plate(r.site, plate, values):
            out.append(r)
            continue
        k = r.values.shape[0] // (n * b)  # branches are ordered (particle, coordinate, support value)
        shape = r.values.shape[1:]
        vals = r.values.reshape((n, b, k) + shape)[:, 0].reshape((n * k,) + shape)
        weights = jnp.swapaxes(r.weights.reshape(n, b, k), 1, 2).reshape(n * k, b)
        out.append(Request(r.call, r.site, r.estimator, "local", jnp.repeat(jnp.arange(n), k), jnp.full((n * k,), -1), vals,
                           weights, None, b, 1.0 / n))
    return out


def combine(value, ledger: list, state: BranchState, rerun: Callable, est_params: dict) -> jax.Array:
    """The surrogate of one objective evaluation: `value` plus the score terms of `ledger`, the
    requests' branch terms (`rerun(override) -> (objective value, declared per-element terms or
    None)`) and baseline regressions.

    A term with declared per-particle terms f (`provi.particle_mean`) gets the learning signal
    (value - declared) + (f_i - b_i) / n, b_i its baseline for f_i (leave-one-out: the other
    particles' f), instead of value - b_i.
    """
    baselines, extra = {}, 0.0
    position = {id(t): i for i, t in enumerate(ledger)}
    for r in state.requests:
        if r.kind == "loo" and (id(r.term) not in position or r.term.signal is not None):
            continue  # claimed by the objective (e.g. VIMCO), or computed from the signals below
        if r.kind == "local":  # element b's term at each branch: (branches, B)
            f = jax.vmap(lambda p, v, r=r: sg(rerun(Override(r.call, r.site, p, -1, v))[1][p]))(r.particle, r.values)
            extra = extra + r.norm * jnp.sum((r.weights - sg(r.weights)) * f)
            continue
        f = jax.vmap(lambda p, c, v, r=r: sg(rerun(Override(r.call, r.site, p, c, v))[0]))(r.particle, r.coord, r.values)
        if r.kind == "weights":
            extra = extra + jnp.sum((r.weights - sg(r.weights)) * f)
        else:
            n = r.term.score.shape[0]
            baselines[position[id(r.term)]] = jnp.mean(f.reshape(n, n - 1), axis=1)
    for i, term in enumerate(ledger):
        if i in baselines:
            continue
        terms = None if term.signal is None else term.signal[0]
        base, st = term.estimator.baseline, est_params.get(term.site)
        if isinstance(base, LeaveOneOut) and terms is not None and terms.shape[0] > 1:
            n = terms.shape[0]
            baselines[i] = sg((jnp.sum(terms, axis=0) - terms) / (n - 1))
        elif isinstance(base, RunningAverage) and st:
            baselines[i] = jnp.broadcast_to(sg(base.value(st)), term.score.shape)
        elif isinstance(base, Learned) and st:
            target = value if terms is None else terms  # what the baseline predicts
            b, fit = base.predict(st, target, term.features)  # fit trains b on the target
            baselines[i] = jnp.broadcast_to(sg(b), term.score.shape)
            extra = extra + (fit - sg(fit))
    return surrogate(value, ledger, baselines) + extra


def init_states(program: AbstractGuide) -> dict:
    """Explicit estimator state for `params["estimators"]`: {site: state} for sites that keep any."""
    fns = program.site_fns
    return {name: st for name, est in program.estimators.items() if (st := est.init_state(fns.get(name)))}


def update_state(program: AbstractGuide, old: dict, new: dict, value) -> dict:
    """After an optimiser step: advance running averages (and the running moments of network
    baselines) with the step's objective `value`."""
    if "estimators" not in new:
        return new
    states = dict(new["estimators"])
    for name, est in program.estimators.items():
        base = est.baseline
        if isinstance(base, RunningAverage) and name in states:
            states[name] = base.update(old["estimators"][name], value)
        elif isinstance(base, Learned) and "layers" in states.get(name, {}):
            states[name] = {**states[name], **base.update(old["estimators"][name], value)}
    return {**new, "estimators": states}

"""The shared site transformation: applies each guide site's estimator at its sample statement.

`SiteHook` is one small NumPyro messenger. Placed outside the guide's trace, it rewrites each
latent sample site's value as the site's estimator says (so later guide sites and the trace see
the rewritten value), records `(value, log_q, score)` and, for branching estimators, the
estimator's branches; in a branch evaluation it also patches one coordinate of one particle's
draw with the branch's value. `draw_sites` runs a guide for `n` particles under the hook
(vectorised with vmap), files a `ScoreTerm` in the ledger for each site with a score, and branch
requests in the `BranchState` (see `provi.estimators.branch`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from numpyro.primitives import Messenger

from provi.core.batching import vmap_or_call
from provi.core.bound import ScoreTerm
from provi.core.trace import site_log_prob
from provi.estimators.branch import BranchState, Request
from provi.estimators.enumerate import event_size
from provi.estimators.score import LeaveOneOut, site_features

__all__ = ["SiteHook", "draw_sites"]


def patch(value, particle, override, size: int = 1):
    """`value` with coordinate `override.coord` (all coordinates when negative) set from
    `override.value`, in particle `override.particle` only; a coordinate is `size` consecutive
    entries (one event of the site's base distribution, e.g. a one-hot vector)."""
    rows = jnp.reshape(value, (-1, size))
    new = jnp.reshape(jnp.asarray(override.value).astype(rows.dtype), (-1, size))
    idx = jnp.arange(rows.shape[0])
    hit = (particle == override.particle) & ((idx == override.coord) | (override.coord < 0))
    return jnp.reshape(jnp.where(hit[:, None], new, rows), jnp.shape(value))


class SiteHook(Messenger):
    """Rewrite each latent guide site's value by its estimator; record what objectives need."""

    def __init__(self, estimators: dict, particle, override=None, branches: bool = True, sizes: dict | None = None):
        super().__init__()
        self.estimators = estimators
        self.particle = particle
        self.override = override
        self.want_branches = branches
        self.records: dict = {}
        self.sizes = {} if sizes is None else sizes  # coordinates per draw of each branching site

    def postprocess_message(self, msg):
        name = msg["name"]
        if msg["type"] != "sample" or msg.get("is_observed") or name not in self.estimators:
            return
        est = self.estimators[name]
        key = msg["kwargs"].get("rng_key")
        key = jax.random.PRNGKey(0) if key is None else key
        value = msg["value"]
        if self.override is not None and self.override.site == name:
            value = patch(jax.lax.stop_gradient(value), self.particle, self.override, event_size(msg["fn"]))
        value, score = est.draw(msg["fn"], value, key)
        lq = site_log_prob(msg, value)
        if est.score_function:
            score = site_log_prob(msg, value, scaled=False)
        branches = est.branches(msg["fn"], value, key) if est.branching and self.want_branches else None
        if branches is not None:
            self.sizes[name] = math.prod(jnp.shape(value)) // event_size(msg["fn"])
        needs = self.want_branches and est.baseline is not None and est.baseline.needs_features
        self.records[name] = (value, lq, score, branches, site_features(msg["fn"]) if needs else None)
        msg["value"] = value


def draw_sites(trace_fn, sites, estimators, key, n, ledger, state: BranchState | None):
    """Run `trace_fn(key)` (a guide trace) for `n` particles under `SiteHook`: `(z, log_q)`;
    score terms go to `ledger`, branch requests to `state` (None: no branching, e.g. results)."""
    call = state.next_call() if state is not None else 0
    override = state.override if state is not None and state.override is not None and state.override.call == call else None
    collect = state is not None and state.collect
    sizes: dict = {}

    def one(k, i):
        hook = SiteHook(estimators, i, override, branches=collect, sizes=sizes)
        with hook:
            trace_fn(k)
        z, log_q, scores, branches, features = {}, 0.0, {}, {}, {}
        for name in sites:
            value, lq, score, br, feats = hook.records[name]
            z[name] = value
            log_q = log_q + lq
            if score is not None:
                scores[name] = score
            if br is not None:
                branches[name] = br
            if feats is not None:
                features[name] = feats
        return z, log_q, scores, branches, features

    z, log_q, scores, branches, features = vmap_or_call(one)(jax.random.split(key, n), jnp.arange(n))
    for name, score in scores.items():
        est = estimators[name]
        term = ScoreTerm(name, est, score, per_element=est.element_signals, features=features.get(name))
        ledger.append(term)
        if collect and isinstance(est.baseline, LeaveOneOut) and n > 1:
            i, j = jnp.nonzero(~jnp.eye(n, dtype=bool), size=n * (n - 1))
            state.requests.append(Request(call, name, est, "loo", i, jnp.full(i.shape, -1), z[name][j], None, term))
    for name, (values, coords, weights) in branches.items():
        r = values.shape[1]
        particle = jnp.repeat(jnp.arange(n), r)
        flat = lambda x: x.reshape((n * r,) + x.shape[2:])  # noqa: E731
        state.requests.append(
            Request(call, name, estimators[name], "weights", particle, flat(coords), flat(values), flat(weights), None, sizes[name])
        )
    return z, log_q

"""The vocabulary of objectives: `sim`, `density`, `detach` and friends.

Inside an objective, `model` and `guide` are bound programs (`provi.core.bound`): they carry the
current parameters, a stream of PRNG keys and the model's data. `sim` draws from a guide; `density`
scores values under the model or a guide. Both vectorise over leading particle axes. `sim(model)`
draws from the model's joint (latent and observed sites: data simulated from the prior
predictive), and `with_observed` puts simulated data where the model reads its data (as
wake-sleep's sleep phase needs). Draws from sites whose estimator is not pathwise leave a
`ScoreTerm` in the bound guide's ledger; `provi.estimators.surrogate` turns the ledger and the
objective's value into a surrogate whose gradient is an unbiased gradient estimate.

Objectives that shape their own gradient use a few more primitives: `detach` (cut a program's
parameters, or values, from the gradient), `replace_grad` (a value with another expression's
gradient), `claim_scores` (take the score terms out of the ledger, per particle), `particle_mean`
(declare per-particle terms), `kl` (analytic KL divergences per site), and `split_auxiliary` (a
guide's auxiliary draws apart from the latents). Objectives that move a family guide in its flat
coordinates (`provi.core.coordinates`) read them with `particles`, `components` or `gaussian`, and
`place` puts points of those coordinates into the model's sites (with the log Jacobian), so
`density(model, values) + log_jacobian` is the log target in the coordinates the guide lives in.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.kl import kl_divergence
from numpyro.primitives import Messenger

from provi.core.batching import batch_ndim, vectorise
from provi.core.coordinates import components, gaussian, particles, place
from provi.core.bound import BoundGuide, BoundModel, call_args, numpyro_fn, trace
from provi.core.pointwise import pointwise_density
from provi.core.trace import is_latent, run, sum_log_prob
from provi.errors import ModelError, ObjectiveError

__all__ = [
    "components",
    "sim",
    "with_observed",
    "density",
    "detach",
    "replace_grad",
    "claim_scores",
    "pending_scores",
    "particle_mean",
    "kl",
    "split_auxiliary",
    "sim_given",
    "density_given",
    "particles",
    "gaussian",
    "place",
    "step_count",
    "random_key",
]


def sim(program, *args, n: int | None = None, **kwargs):
    """Draw from a bound guide, or from the model's joint: returns `(values, log_density)`.

    Guide: `values` maps each latent site to its constrained draw and `log_density` is log q.
    Model: `values` maps every sample site, observed ones included, to a draw from the model's
    joint (the observed sites' data left out and simulated), and `log_density` is the log joint.
    With `n`, values have a leading axis of length `n` (and log_density shape (n,)); without, one
    draw and a scalar.
    """
    if isinstance(program, BoundModel):
        return _sim_model(program, *call_args(program, args, kwargs), n)
    if not isinstance(program, BoundGuide):
        raise TypeError("provi.sim takes the model or guide an objective receives")
    guide = program
    if not guide.program.has_density:
        raise ObjectiveError(
            f"{guide.program.name} has no density, so provi.sim cannot give log q and objectives that draw from the "
            "guide (ELBO, IWAE, ...) cannot move it: use objective=provi.SVGD(), or move the particles with "
            "provi.particles and provi.place"
        )
    args, kwargs = call_args(guide, args, kwargs)
    z, log_q = guide.program.sim(
        guide.current_params(), guide.consts, guide.keys(), 1 if n is None else n, args, kwargs, guide.ledger, guide.branching
    )
    if n is None:
        z = jax.tree.map(lambda x: x[0], z)
        log_q = log_q[0]
    return z, log_q


def _sim_model(model: BoundModel, args, kwargs, n):
    if model.program.plates:
        raise ObjectiveError(
            f"provi.sim(model): the model subsamples plate(s) {sorted(model.program.plates)}; simulating data from it "
            "is not supported (fit the model on the whole data plate to simulate from it)"
        )
    fn, fixed = numpyro_fn(model)

    def one(key):
        tr = run(_Unobserve(fn), key, args, kwargs, fixed)
        values = {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}
        return values, sum_log_prob(tr)

    keys = jax.random.split(model.keys(), 1 if n is None else n)
    values, log_p = jax.vmap(one)(keys)
    return (jax.tree.map(lambda x: x[0], values), log_p[0]) if n is None else (values, log_p)


class _Unobserve(Messenger):
    """Observed sample sites drawn from their distributions instead of fixed at the data."""

    def process_message(self, msg):
        if msg["type"] == "sample" and msg.get("is_observed"):
            msg["value"], msg["is_observed"] = None, False


def with_observed(model: BoundModel, values: dict, *args, data: dict | None = None, **kwargs) -> tuple[tuple, dict]:
    """`(args, kwargs)`: the model's arguments with each observed site's data replaced by its value
    in `values` (one draw, e.g. from `provi.sim(model)`; vmap over particles).

    `data` maps an observed site to the position (int) or keyword (str) of the argument holding
    its data; by default each observed site is matched to the argument passed as its `obs`. A
    model that transforms its data before observing it (`obs=x[idx]`, `obs=y.T`) needs `data`.
    """
    if not isinstance(model, BoundModel):
        raise TypeError("provi.with_observed takes the model an objective receives")
    args, kwargs = call_args(model, args, kwargs)
    if data is None:
        data = {}
        for name, site in trace(model, model.keys(), {}, args, kwargs).items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            where = [i for i, a in enumerate(args) if site["value"] is a] + [k for k, v in kwargs.items() if site["value"] is v]
            if not where:
                raise ObjectiveError(
                    f"observed site {name!r} does not observe one of the model's arguments as it is (the model "
                    f"transforms its data before observing it); say which argument holds it: data={{{name!r}: "
                    "position or keyword}"
                )
            data[name] = where[0]
    args, kwargs = list(args), dict(kwargs)
    for name, where in data.items():
        if name not in values:
            raise ModelError(f"provi.with_observed: no value for observed site {name!r} in {sorted(values)}")
        if isinstance(where, int) and not isinstance(where, bool):
            args[where] = values[name]
        else:
            kwargs[where] = values[name]
    return tuple(args), kwargs


def density(program, values: dict, *args, sites=None, **kwargs) -> jax.Array:
    """Log density of `values` under a bound model (the log joint, data included) or a bound guide.

    Leading axes of `values` beyond each site's own shape are particle axes: the result has them.
    `sites` (a collection of site names) restricts the sum to those sites' own terms (each scaled
    as NumPyro scales it, e.g. by a subsampled plate); `values` then needs only the values those
    terms and their parents read. Per-site densities need a NumPyro program (the model, or a NumPyro
    guide), not a family guide.
    """
    if not isinstance(program, (BoundModel, BoundGuide)):
        raise TypeError("provi.density takes the model or guide an objective receives")
    if not isinstance(values, dict):
        raise TypeError(f"provi.density takes a dict of site values, got {type(values).__name__}")
    args, kwargs = call_args(program, args, kwargs)
    if sites is None:
        return program.log_density(values, args, kwargs)
    return _site_density(program, values, tuple(sites), args, kwargs)


def _site_density(bound, values, sites, args, kwargs):
    numpyro_fn(bound)  # a clear error for family guides
    _refuse_enumerated(bound, "per-site densities (sites=)")
    shapes = bound.program.shapes
    unknown = [s for s in values if s not in shapes]
    if unknown:
        raise ModelError(f"provi.density: unknown site name(s) {unknown}; the sites are {list(shapes)}")
    key = bound.keys()

    def one(v):
        tr = trace(bound, key, v, args, kwargs)
        for name in sites:
            site = tr.get(name)
            if site is None or site["type"] != "sample":
                raise ModelError(f"provi.density: no sample site {name!r}; the sites are {list(shapes)}")
            if not site["is_observed"] and name not in v:
                raise ModelError(f"provi.density: sites={list(sites)} needs a value for site {name!r}")
        return sum_log_prob(tr, sites)

    return vectorise(one, batch_ndim(values, shapes))(values)


def _refuse_enumerated(bound, what: str) -> None:
    if isinstance(bound, BoundModel) and bound.program.info.enumerated:
        names = [s.name for s in bound.program.info.enumerated]
        raise ModelError(
            f"{what} of a model with enumerated sites {names} are not defined: those sites are summed out of "
            "its density as a whole. Use the whole density (provi.density(model, z)), or leave the sites unenumerated"
        )


def detach(x):
    """`x` cut from the gradient.

    A bound guide or model: the same program with its parameters cut from the gradient (draws
    and values passed to it keep their path; path-derivative estimators such as STL and DReG
    score draws with `provi.density(provi.detach(guide), z)`). Anything else (a dict of draws, an
    array): `jax.lax.stop_gradient` of it.
    """
    if isinstance(x, (BoundGuide, BoundModel)):
        return dataclasses.replace(x, detached=True)
    return jax.tree.map(jax.lax.stop_gradient, x)


def replace_grad(value: jax.Array, surrogate: jax.Array) -> jax.Array:
    """`value`'s value with `surrogate`'s gradient: `value` is what the objective reports,
    `surrogate` is what its gradient estimator differentiates."""
    return jax.lax.stop_gradient(value) + (surrogate - jax.lax.stop_gradient(surrogate))


def particle_mean(guide: BoundGuide, terms: jax.Array, *, values: dict | None = None, plate: str | None = None,
                  rest: jax.Array | None = None) -> jax.Array:
    """The mean of per-particle `terms` (shape (n,)), declared as such: `terms[i]` depends on the
    i-th particle of each `sim` call so far and on no other particle's draws.

    Score-function sites of those calls then take particle i's own term as its learning signal,
    (terms[i] - baseline) / n plus whatever else the objective adds to the mean, instead of the
    whole objective: the same expectation (the other particles' terms do not depend on particle
    i's draw), much less variance; and a leave-one-out baseline becomes the mean of the other
    particles' terms, with no re-runs. `ELBO` declares its particles this way.

    Per element of a plate: `terms` of shape (n, B), one column per element of plate `plate`,
    `values` the draws they were computed at, and `rest` (n,) the particle's other terms; the
    declared mean is mean_i(sum_b terms[i, b] + rest[i]). A score-function site inside the plate
    then scores each element's draw against that element's column plus `rest` (which may depend
    on any element); this relies on the plate's conditional independence, as NumPyro's and Pyro's
    TraceGraph_ELBO do. Sites outside the plate, and sites whose baseline keeps a running state
    (`RunningAverage`, `Learned`), take the particle's whole term.
    """
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.particle_mean takes the guide an objective receives")
    terms = jnp.asarray(terms)
    if plate is None:
        if terms.ndim != 1:
            raise ObjectiveError(f"provi.particle_mean takes one term per particle, shape (n,), got shape {terms.shape}")
        declared = jnp.mean(terms)
        guide.ledger[:] = [
            dataclasses.replace(t, signal=(terms, declared)) if jnp.shape(t.score) == terms.shape else t for t in guide.ledger
        ]
        return declared
    if terms.ndim != 2 or values is None:
        raise ObjectiveError(
            f"provi.particle_mean(plate={plate!r}) takes terms of shape (n, plate size) and the values they "
            f"were computed at; got shape {terms.shape}"
        )
    rest = jnp.zeros(terms.shape[:1], terms.dtype) if rest is None else jnp.asarray(rest)
    whole = jnp.sum(terms, -1) + rest
    declared = jnp.mean(whole)
    guide.declared[:] = [(plate, values, terms, declared)]
    for i, term in enumerate(list(guide.ledger)):
        if jnp.shape(term.score) != whole.shape:
            continue
        element_score = _element_score(guide, values, term.site, plate) if term.per_element else None
        if element_score is not None:
            guide.ledger[i] = dataclasses.replace(term, score=element_score, signal=(terms + rest[:, None], declared))
        else:
            guide.ledger[i] = dataclasses.replace(term, signal=(whole, declared))
    return declared


def in_plate(guide: BoundGuide, values: dict, name: str, plate: str) -> bool:
    """Whether guide site `name` lies in plate `plate` (one log density term per element)."""
    return _element_score(guide, values, name, plate) is not None


def _element_score(guide: BoundGuide, values: dict, name: str, plate: str):
    """log q of each plate element's draw of site `name`, (n, B), unscaled (the minibatch scale is
    in the terms); None when the site does not lie in `plate`."""
    try:
        pw = pointwise_density(guide, detach(values), plate=plate, sites=(name,))
    except (ModelError, TypeError):
        return None
    return pw.local if name not in pw.outside and jnp.ndim(pw.local) == 2 else None


def claim_scores(guide: BoundGuide) -> jax.Array:
    """Take the pending score terms out of `guide`'s ledger: their sum per particle, shape (n,)
    (a scalar 0 when the ledger is empty).

    Score terms are left by draws whose estimator is not pathwise (e.g. `Reinforce`). Once claimed,
    the objective owns them: `provi.fit` no longer multiplies them by the objective's value, so the
    objective must build their gradient itself (VIMCO uses per-particle baselines), or drop them.
    """
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.claim_scores takes the guide an objective receives")
    entries = list(guide.ledger)
    guide.ledger.clear()
    if not entries:
        return jnp.zeros(())
    shapes = {jnp.shape(t.score) for t in entries}
    if len(shapes) > 1:
        raise ObjectiveError(
            f"score terms of sites {[t.site for t in entries]} have different particle shapes {sorted(shapes)}; claim "
            "the scores after each provi.sim call"
        )
    return sum(t.score for t in entries)


def pending_scores(guide: BoundGuide) -> tuple[str, ...]:
    """The sites with score terms in `guide`'s ledger (unclaimed), in the order they were drawn."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.pending_scores takes the guide an objective receives")
    return tuple(dict.fromkeys(t.site for t in guide.ledger))


def split_auxiliary(guide: BoundGuide, values: dict) -> tuple[dict, dict]:
    """`(latents, auxiliary)`: `values` split into the model's latent sites and the guide's
    auxiliary sites (those marked `infer={'is_auxiliary': True}`)."""
    latent_names = set(guide.program.latents)
    latents = {k: v for k, v in values.items() if k in latent_names}
    aux = {k: v for k, v in values.items() if k not in latent_names}
    return latents, aux


def kl(guide: BoundGuide, model: BoundModel, values: dict, *args, **kwargs) -> tuple[jax.Array, tuple[str, ...]]:
    """Analytic KL(q_s || p_s), summed over the latent sites s where it is known: `(kl, sites)`.

    At each particle of `values` (the guide's draws), for each model latent site whose guide
    distribution and model prior (given the other sites' values) have a registered
    `numpyro.distributions.kl.kl_divergence` and the same scale, the KL is computed in closed
    form. `kl` has the particle shape; `sites` names the sites it covers (possibly none). A family
    guide has no per-site distributions, and a model with enumerated sites no per-site priors:
    `sites` is then empty.
    """
    if not isinstance(guide, BoundGuide) or not isinstance(model, BoundModel):
        raise TypeError("provi.kl takes the guide and the model an objective receives")
    nb = batch_ndim(values, guide.program.shapes)
    if guide.program.numpyro_fn(guide.params) is None or model.program.info.enumerated:  # no per-site priors to pair
        name = next(iter(values))
        return jnp.zeros(jnp.shape(values[name])[:nb]), ()
    gargs, gkwargs = call_args(guide, args, kwargs)
    margs, mkwargs = call_args(model, args, kwargs)
    latent_names = model.program.info.latent_names
    gkey, mkey = guide.keys(), model.keys()
    covered: list[str] = []

    def one(v):
        gtr = trace(guide, gkey, v, gargs, gkwargs)
        mtr = trace(model, mkey, {k: v[k] for k in latent_names}, margs, mkwargs)
        total, names = jnp.zeros(()), []
        for name in latent_names:
            q, p = gtr[name], mtr[name]
            if not _same_scale(q.get("scale"), p.get("scale")):
                continue
            try:
                d = kl_divergence(q["fn"], p["fn"])
            except NotImplementedError:
                continue
            scale = p.get("scale")
            total = total + jnp.sum(d if scale is None else d * scale)
            names.append(name)
        covered[:] = names
        return total

    return vectorise(one, nb)(values), tuple(covered)


def _same_scale(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        return bool(jnp.all(jnp.asarray(a) == jnp.asarray(b)))
    except jax.errors.ConcretizationTypeError:
        return a is b


def sim_given(guide: BoundGuide, fn, given: dict, *args, n: int, **kwargs) -> tuple[dict, jax.Array]:
    """Draw `n` times from a conditional NumPyro program `fn(given, *args, **kwargs)` at each
    particle of `given` (a dict of the guide's sites with leading particle axes): `(values, log_r)`,
    with particle axes then an `n` axis. `fn`'s `numpyro.param` sites take the guide's parameters
    of the same name (others keep their initial values); its sites are drawn pathwise.
    Used for reverse models r(u | z) of hierarchical guides."""
    args, kwargs = call_args(guide, args, kwargs)
    _, fixed = numpyro_fn(guide)
    nb = batch_ndim(given, guide.program.shapes)
    lead = jnp.shape(given[next(iter(given))])[:nb]
    keys = jax.random.split(guide.keys(), int(np.prod(lead, dtype=int)) * n).reshape(lead + (n, -1))

    def one(g, key):
        tr = run(fn, key, (g,) + tuple(args), kwargs, fixed)
        return {k: v["value"] for k, v in tr.items() if is_latent(v)}, sum_log_prob(tr)

    return vectorise(jax.vmap(one, in_axes=(None, 0)), nb)(given, keys)


def density_given(guide: BoundGuide, fn, values: dict, given: dict, *args, **kwargs) -> jax.Array:
    """Log density of `values` under the conditional NumPyro program `fn(given, *args, **kwargs)`
    (parameters as in `sim_given`); `given` is broadcast to the particle axes of `values`."""
    args, kwargs = call_args(guide, args, kwargs)
    _, fixed = numpyro_fn(guide)
    shapes = guide.program.shapes
    lead = jnp.shape(values[next(iter(values))])[: batch_ndim(values, shapes)]
    given = {k: jnp.broadcast_to(v, lead + tuple(shapes[k])) for k, v in given.items()}
    key = guide.keys()

    def one(v, g):
        return sum_log_prob(run(fn, key, (g,) + tuple(args), kwargs, {**fixed, **v}))

    return vectorise(one, len(lead))(values, given)


def step_count(guide: BoundGuide):
    """The number of optimisation steps taken before this objective evaluation (an int32 array),
    for objectives that change over a fit (annealing, warm-up); None outside a fit's loop (e.g.
    `FitResult.evaluate`), where such an objective should take its final form."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.step_count takes the guide an objective receives")
    return guide.step


def random_key(program) -> jax.Array:
    """A fresh PRNG key from a bound program's stream, for an objective's own randomness (a
    kernel's random features, a subsample): independent of every draw `sim` makes, and new at each
    step of a fit."""
    if not isinstance(program, (BoundGuide, BoundModel)):
        raise TypeError("provi.random_key takes the guide or the model an objective receives")
    return program.keys()

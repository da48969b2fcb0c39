"""The several-modes stage of `guide="auto"`: find the modes of a multimodal posterior from several
starts and put a mixture over those that carry mass.

PSIS cannot see a mode the approximation never visits: a Gaussian fitted in one of two
well-separated modes can have a small k-hat and still miss half the mass. So after the first
Gaussian (and non-centring), Newton's method runs from `MODE_STARTS` more points, half drawn
uniformly on [-2, 2]^D in the unconstrained space (NumPyro's `init_to_uniform`), half from the
fitted Gaussian widened threefold, and from the Gaussian's mean. The strict maxima found, one per
basin (`provi.core.mode.distinct_modes`), are ranked by their Laplace mass; those within a factor
`MODE_MIN_WEIGHT` of the largest (at most `MODE_MAX`) each get a full-rank Gaussian fitted from
there (the one already fitted is reused). Each component's mass is then estimated by importance
sampling from it, Z_k = E_{q_k}[p(x, u) / q_k(u)], and the mixture sum_k Z_k q_k / sum_j Z_j
(`provi.guides.ModeMixture`, weights held fixed) replaces the single Gaussian: for
well-separated modes this is the posterior's own split of the mass. A single mode that is not the
fitted one (the first search ended in a minor mode, or at a saddle) replaces it, as does a fit
from the one mode that carries mass where the first Gaussian sits at no mode and its k-hat is
>= `KHAT_GOOD` and the new one's is lower. A first Gaussian that sits at no
mode but spans them all (its importance-sampled mass is within `COVERED_MISSING` of the modes'
total) is kept where its k-hat is the lower.

Copies of a mode under a permutation of a site's entries with the same density (label switching
in a mixture model) are not mixed: the fit reports one labelling, as a sampler's chain would.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from scipy.special import logsumexp

from provi.core.mode import distinct_modes, whitening
from provi.defaults import KHAT_GOOD, MODE_MASS_DRAWS, MODE_MAX, MODE_MAX_ITER, MODE_MIN_WEIGHT, MODE_STARTS, NEWTON_MAX_DIM
from provi.engine.compile import cached, run_once
from provi.engine.start import mode_search
from provi.engine.step import host_key
from provi.guides import FullRank, ModeMixture
from provi.programs import FamilyGuide

__all__ = ["gaussian_u", "find_modes", "several_modes"]

COVERED_MISSING = 0.05  # a fit whose importance-sampled mass is within 5% of the modes' total spans them


def gaussian_u(res) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, Cholesky factor)` of a fitted full-rank Gaussian in the unconstrained space (host
    arrays: u = shift + P v, v ~ N(loc, L L^T))."""
    c, p = jax.device_get((res.consts, res.params["guide"]))
    raw = np.asarray(p["scale_tril"], np.float64)
    L = np.tril(raw, -1) + np.diag(np.exp(np.diag(raw)))
    P, loc = np.asarray(c["P"], np.float64), np.asarray(p["loc"], np.float64)
    if P.ndim == 2:
        return c["shift"] + P @ loc, P @ L
    return c["shift"] + P * loc, P[:, None] * L


def find_modes(res, seed: int, starts: int = MODE_STARTS) -> tuple[list, int | None]:
    """`([(Mode, Laplace log mass)], home)`: the distinct modes found from the fitted Gaussian's
    mean and `starts` more points, by decreasing mass, and the index of the one the fitted
    Gaussian sits at (its mean within one Laplace sd of that mode; None if at none)."""
    space = res.guide.space
    mean, L = gaussian_u(res)
    rng = np.random.default_rng(seed + 97)
    half = starts // 2
    points = np.concatenate([mean[None], rng.uniform(-2.0, 2.0, (half, space.dim)),
                             mean + 3.0 * rng.standard_normal((starts - half, space.dim)) @ L.T])
    modes = mode_search(res.model, space, res.layout, res.params["model"], res.data, points, MODE_MAX_ITER, tol=1e-3)
    found = distinct_modes(modes)
    home = next((j for j, (i, _) in enumerate(found) if _within(mean, modes[i], 1.0)), None)
    return [(modes[i], m) for i, m in found], home


def _within(u: np.ndarray, mode, sds: float) -> bool:
    """Whether `u` is within `sds` standard deviations of `mode` under its Laplace covariance."""
    diff = u - np.asarray(mode.u, np.float64)
    return bool(diff @ np.asarray(mode.curvature, np.float64) @ diff <= sds**2)


def several_modes(res, k: float, tried: list[str], fit_family, objective, optimizer, steps, seed, khat):
    """The several-modes stage: `(fit, its k-hat)`, `res` itself where it sits at (or closely
    spans) the one mode that carries mass; `tried` records what was done. `khat(fit, seed)` scores
    a fit."""
    if not isinstance(res.guide.family, FullRank) or res.guide.space.dim > NEWTON_MAX_DIM:
        return res, k
    found, home = find_modes(res, seed)
    heavy, copies = _heavy(res.guide.space, found)
    if not heavy or heavy == [home] or (home is None and len(heavy) == 1 and k < KHAT_GOOD):
        return res, k
    fits = [res if i == home else _fit_at(res, found[i][0], j, fit_family, objective, optimizer, steps, seed)
            for j, i in enumerate(heavy)]
    fits, log_z = _weighed(fits, seed)
    if not fits:
        return res, k
    new = fits[0] if len(fits) == 1 else mixture(fits, log_z)
    new.stop.seconds = res.stop.seconds + sum(f.stop.seconds for f in fits if f is not res)
    k_new = khat(new, seed)
    w = np.exp(log_z - logsumexp(log_z))
    what = ("a full-rank Gaussian at the mode with the most mass" if len(fits) == 1 else
            f"a mixture of full-rank Gaussians over {len(fits)} modes, weights " + ", ".join(f"{x:.3f}" for x in w))
    what += f" ({len(found)} mode(s) found from {MODE_STARTS + 1} starts" + (f", {copies} relabelled copies set aside" if copies else "")
    # a first Gaussian at no mode that holds all the modes' mass spans them: keep it if it is the closer
    spans = home is None and (len(fits) == 1 or _log_evidence(res, seed) >= logsumexp(log_z) + np.log(1.0 - COVERED_MISSING))
    if spans and not k_new < k:
        tried.append(what + f"; k-hat {k_new:.2f}, so kept the first fit, which spans {'it' if len(fits) == 1 else 'them'})")
        return res, k
    tried.append(what + f"; k-hat {k_new:.2f})")
    new.auto = {**(new.auto or {}), "modes": {"weights": w.tolist(), "log_evidence": log_z.tolist(), "found": len(found)}}
    return new, k_new


def _heavy(space, found) -> tuple[list[int], int]:
    """The indices of the modes in `found` that carry mass (Laplace mass at least `MODE_MIN_WEIGHT`
    of the largest; at most `MODE_MAX`, relabelled copies dropped), and how many copies were dropped."""
    if not found:
        return [], 0
    top = found[0][1]
    heavy, copies = _drop_relabelled(space, found, [i for i, (_, m) in enumerate(found) if m >= top + np.log(MODE_MIN_WEIGHT)])
    return heavy[:MODE_MAX], copies


def _weighed(fits, seed) -> tuple[list, np.ndarray]:
    """The fits whose importance-sampled mass is finite and at least `MODE_MIN_WEIGHT` of the total,
    and their log masses."""
    log_z = np.array([_log_evidence(f, seed) for f in fits])
    keep = np.isfinite(log_z)
    if keep.any():
        keep &= np.exp(log_z - logsumexp(log_z[keep])) >= MODE_MIN_WEIGHT
    return [f for f, kept in zip(fits, keep) if kept], log_z[keep]


def _drop_relabelled(space, found, idx) -> tuple[list[int], int]:
    """`idx` without modes that are copies of an earlier one under a permutation of each site's
    entries, with the same density (label switching); and how many were dropped."""
    kept, dropped = [], 0
    for i in idx:
        if any(_relabelled(space, found[i][0], found[j][0]) for j in kept):
            dropped += 1
        else:
            kept.append(i)
    return kept, dropped


def _relabelled(space, a, b) -> bool:
    va, vb = float(a.log_density), float(b.log_density)
    if abs(va - vb) > 1e-3 * (1.0 + abs(va)):
        return False
    ua, ub = space.unflatten(np.asarray(a.u)), space.unflatten(np.asarray(b.u))
    for name in space.names:
        x, y = np.sort(np.ravel(ua[name])), np.sort(np.ravel(ub[name]))
        if not np.allclose(x, y, rtol=1e-2, atol=1e-2):
            return False
    return True


def _fit_at(res, mode, j, fit_family, objective, optimizer, steps, seed):
    """A full-rank Gaussian fitted from the Laplace approximation at `mode`."""
    program = res.guide
    P, _ = whitening(mode.curvature, tril=True)
    init = cached(("init params", program), lambda: run_once(program.init_params))  # one small program, not one per operation
    params = init(host_key(seed + 101 + j), np.ones((program.space.dim,)))
    start = (program, params, program.consts(mode.u, P), res.params["model"])
    fit = fit_family(program.family, objective, optimizer, steps, start, model=res.model.model)
    fit.reparam = res.reparam
    return fit


def _log_evidence(res, seed) -> float:
    """log of the mass a Gaussian's basin carries: log E_q[p(x, u) / q(u)] by importance sampling."""
    _, log_w = res.weighted_draws(MODE_MASS_DRAWS, seed + 3)
    log_w = log_w.astype(np.float64)
    if not np.all(np.isfinite(log_w)):
        return float("-inf")
    return float(logsumexp(log_w) - np.log(log_w.shape[0]))


def mixture(fits, log_z):
    """The fits (full-rank Gaussians on one space) as one `ModeMixture` fit with weights
    proportional to exp(log_z), in the unconstrained space (no whitening)."""
    first = fits[0]
    locs, raws = [], []
    for f in fits:
        loc, L = gaussian_u(f)
        locs.append(loc)
        raws.append(np.tril(L, -1) + np.diag(np.log(np.diag(L))))
    program = FamilyGuide(first.guide.space, ModeMixture(components=len(fits)))
    dtype = np.asarray(first.params["guide"]["loc"]).dtype
    params = {"loc": np.stack(locs).astype(dtype), "scale_tril": np.stack(raws).astype(dtype),
              "log_weights": np.asarray(log_z - logsumexp(log_z), dtype)}
    consts = program.consts(np.zeros(program.space.dim), program.identity_whitening())
    return dataclasses.replace(first, guide=program, params={"model": first.params["model"], "guide": params}, consts=consts)

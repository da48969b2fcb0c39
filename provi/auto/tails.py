"""Whether a fitted full-rank Gaussian's tails are too light, read off its own importance-weighted draws.

Auto's Student-t stage is a fit of its own: a loop and a draw program around JAX's gamma sampler
and its implicit gradient, about 2.5 s of compilation on a 2-core machine, more than the rest of a
small model's fit. Where the Gaussian is already usable (k-hat in [0.5, 0.7), below 0.7 by a
standard error), auto first asks the Gaussian's k-hat draws, reweighted to the posterior by their
Pareto-smoothed importance weights, how heavy the posterior's tails are: `tail_df` is the weighted
maximum-likelihood degrees of freedom of a Student-t with the Gaussian's location and correlation
(its scale profiled out), from the draws' squared Mahalanobis distances `r = |L^-1 (v - loc)|^2`
(`radial_distances`). A Student-t fitted by VI is worth its cost only where that comes out below
the df the stage starts at (`DF_START`, 30): on a 2-d Student-t posterior with 4 degrees of freedom
it is 4.5-5.6 (three draw sets), and 9-11 on a 5-d one with 10; on non-centred eight schools it is
160-220 (the Student-t auto used to fit there learned df 214 and did not lower k-hat), on a
Gaussian about 300.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> eps = rng.standard_normal((20000, 3)) / np.sqrt(rng.chisquare(5.0, (20000, 1)) / 5.0)
>>> 3.5 < tail_df(np.sum(eps**2, 1), np.zeros(20000), 3) < 7.0
True
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import gammaln

from provi.core.batching import vectorise
from provi.defaults import ONCE_COMPILER_OPTIONS
from provi.diagnostics import psis

__all__ = ["radial_distances", "tail_df", "DF_GRID"]

DF_GRID = np.geomspace(1.0, 1000.0, 31)  # the degrees of freedom `tail_df` compares (and infinity)
SCALE_ITERATIONS = 50  # at most this many Newton steps for the Student-t's log scale at each df
SCALE_TOLERANCE = 1e-8  # Newton stops when no log scale moves by more than this


@functools.partial(jax.jit, static_argnums=0, compiler_options=ONCE_COMPILER_OPTIONS)  # runs once per fit
def _radial(guide, z, params, consts):
    v = guide.to_v(consts, vectorise(guide.space.unconstrain, 1)(z))
    loc, L = guide.family.gaussian_params(params)
    e = jax.scipy.linalg.solve_triangular(L, (v - loc).T, lower=True).T
    return jnp.sum(e**2, axis=-1)


def radial_distances(res, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(r, log_w)` of a full-rank Gaussian fit's `weighted_draws(n, seed)`: each draw's squared
    Mahalanobis distance from the Gaussian's location, and its log importance weight."""
    z, log_w = res.weighted_draws(n, seed)
    r = _radial(res.guide, z, res.params["guide"], res.consts)
    return np.asarray(r, np.float64), np.asarray(log_w, np.float64)


def tail_df(r: np.ndarray, log_w: np.ndarray, dim: int) -> float:
    """The degrees of freedom (from `DF_GRID`, or infinity: Gaussian tails) whose Student-t, with
    its scale fitted, gives the squared distances `r` the highest log-likelihood weighted by the
    Pareto-smoothed importance weights of `log_w`."""
    keep = np.isfinite(r) & np.isfinite(log_w)
    lw = psis(log_w[keep])[0]
    w = np.exp(lw - lw.max())
    w, r, d = w / w.sum(), r[keep], float(dim)
    s = np.sum(w * r) / d  # the Gaussian's own scale, and every df's first
    best_ll, best = np.sum(w * (-0.5 * d * np.log(2 * np.pi * s) - r / (2 * s))), np.inf
    nu = DF_GRID[:, None]
    log_scale = np.full_like(nu, np.log(s))
    for _ in range(SCALE_ITERATIONS):  # Newton's method in log scale, every df at once
        u = r / (nu * np.exp(log_scale))
        f = u / (1.0 + u)
        grad = np.sum(w * (0.5 * (nu + d) * f - 0.5 * d), axis=1, keepdims=True)
        curv = np.sum(w * (0.5 * (nu + d) * f / (1.0 + u)), axis=1, keepdims=True)  # minus the second derivative, > 0
        step = np.clip(grad / curv, -1.0, 1.0)
        log_scale = log_scale + step
        if np.max(np.abs(step)) < SCALE_TOLERANCE:
            break
    scale = np.exp(log_scale)
    ll = np.sum(w * (gammaln((nu + d) / 2) - gammaln(nu / 2) - 0.5 * d * np.log(nu * np.pi * scale)
                     - 0.5 * (nu + d) * np.log1p(r / (nu * scale))), axis=1)
    i = int(np.argmax(ll))
    return float(DF_GRID[i]) if ll[i] > best_ll else best

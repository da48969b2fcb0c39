"""Pareto-smoothed importance sampling: k-hat, smoothed weights, weighted moments, verdicts.

PSIS is computed here in NumPy, as ArviZ's `psislw` computes it (tested equal), so that a fit
never waits for ArviZ's import (1.2 s: matplotlib, scipy.stats, xarray).
"""

from __future__ import annotations

import numpy as np

from provi.defaults import KHAT_GOOD, KHAT_OK

__all__ = ["psis", "khat_se", "khat_usable", "khat_verdict", "weighted_moments"]

_PRIOR_K_WEIGHT = 10.0  # the prior on k: 0.5 with the weight of ten exceedances (Vehtari et al. 2024)


def _gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape k and scale sigma of a generalised Pareto fitted to exceedances `x` (> 0, ascending):
    Zhang & Stephens' (2009) posterior-mean estimate over a grid of theta = -k / sigma, then k
    shrunk towards 0.5 as PSIS does (Vehtari et al. 2024, appendix)."""
    n = x.size
    m = 30 + int(np.sqrt(n))
    quartile = x[int(n / 4 + 0.5) - 1]
    theta = 1.0 / x[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3.0 * quartile)
    k = np.mean(np.log1p(-theta[:, None] * x[None, :]), axis=1)
    profile = n * (np.log(-theta / k) - k - 1.0)  # profile log-likelihood of each theta
    weight = 1.0 / np.sum(np.exp(profile[None, :] - profile[:, None]), axis=1)  # softmax(profile), overflow-safe
    keep = weight >= 10.0 * np.finfo(np.float64).eps
    weight = weight[keep] / np.sum(weight[keep])
    theta_hat = np.sum(theta[keep] * weight)
    k_hat = float(np.mean(np.log1p(-theta_hat * x)))
    sigma = -k_hat / theta_hat
    return (n * k_hat + 0.5 * _PRIOR_K_WEIGHT) / (n + _PRIOR_K_WEIGHT), float(sigma)


def _gpd_quantile(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    """The generalised Pareto's quantiles at probabilities `p` in (0, 1)."""
    if abs(k) < np.finfo(np.float64).eps:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024): the
    normalised, smoothed log weights and the Pareto k-hat of log weights `log_w` (S,), with
    independent draws (relative efficiency 1), as ArviZ's `psislw` computes them.

    The largest M = ceil(min(S / 5, 3 sqrt(S))) weights are replaced by the expected order
    statistics of a generalised Pareto fitted to them (k-hat is its shape), capped at the largest
    raw weight. With 4 tail weights or fewer, k-hat is inf and nothing is smoothed. Non-finite
    log weights count as weight 0.

    >>> lw, k = psis(np.log(np.random.default_rng(0).pareto(1 / 0.6, 20_000) + 1.0))
    >>> round(k, 1), bool(abs(np.logaddexp.reduce(lw)) < 1e-9)
    (0.6, True)
    """
    lw = np.asarray(log_w, dtype=np.float64).copy()
    lw[~np.isfinite(lw)] = -np.inf
    lw -= np.max(lw)
    s = lw.size
    order = np.argsort(lw)
    m = int(np.ceil(min(0.2 * s, 3.0 * np.sqrt(s))))
    cutoff = max(lw[order[-m - 1]] if m < s else -np.inf, np.log(np.finfo(np.float64).tiny))
    tail = np.flatnonzero(lw > cutoff)
    k = np.inf
    if tail.size > 4:
        tail = tail[np.argsort(lw[tail], kind="stable")]
        with np.errstate(all="ignore"):  # a degenerate tail gives k nan: no smoothing, k-hat nan
            k, sigma = _gpd_fit(np.exp(cutoff) * np.expm1(lw[tail] - cutoff))  # > 0 even where exp rounds to equal
        if np.isfinite(k):
            p = (np.arange(tail.size) + 0.5) / tail.size
            lw[tail] = np.log(_gpd_quantile(p, k, sigma) + np.exp(cutoff))
            lw = np.minimum(lw, 0.0)  # no smoothed weight above the largest raw one
    return lw - np.logaddexp.reduce(lw), float(k)


def khat_se(k: float, n_draws: int) -> float:
    """The Monte Carlo standard error of k-hat from `n_draws` draws: the asymptotic standard error
    (1 + k) / sqrt(M) of a generalised Pareto shape fitted to the M largest weights (Smith 1985),
    with M = min(n / 5, 3 sqrt(n)) as PSIS takes its tail (Vehtari et al. 2024). About 0.08 near
    k = 0.7 with 20,000 draws: one set of draws cannot tell 0.65 from 0.75.

    >>> round(khat_se(0.7, 20_000), 3)
    0.083
    """
    m = min(n_draws / 5.0, 3.0 * np.sqrt(n_draws))
    return float((1.0 + max(k, 0.0)) / np.sqrt(m)) if np.isfinite(k) else float("nan")


def khat_usable(k: float, se: float = 0.0) -> bool:
    """Whether PSIS-corrected estimates can be relied on: k-hat below 0.7 by at least one Monte
    Carlo standard error, so that a fit judged usable is not a coin flip away from unreliable."""
    return bool(np.isfinite(k) and k + (se if np.isfinite(se) else 0.0) < KHAT_OK)


def khat_verdict(k: float, se: float = 0.0) -> str:
    """What a Pareto k-hat (with its Monte Carlo standard error `se`) means for the fit, in words
    (Yao et al. 2018; Vehtari et al. 2024).

    >>> khat_verdict(0.3)[:11]
    'k-hat 0.30 '
    """
    if not np.isfinite(k):
        return "k-hat could not be computed (non-finite importance weights): do not trust this fit."
    if k < KHAT_GOOD:
        return f"k-hat {k:.2f} < {KHAT_GOOD}: the approximation is close to the posterior; its answers can be trusted."
    if k < KHAT_OK and not khat_usable(k, se):
        return (
            f"k-hat {k:.2f} +- {se:.2f} is within one Monte Carlo standard error of {KHAT_OK}: another set of draws "
            "may well give k-hat >= 0.7, so treat the approximation as unreliable: do not trust its answers (nor "
            "PSIS-corrected estimates). Try a richer family (guide='fullrank', a flow), a reparameterised model, or more steps."
        )
    if k < KHAT_OK:
        return (
            f"k-hat {k:.2f} in [{KHAT_GOOD}, {KHAT_OK}): the approximation is usable, and PSIS-corrected estimates "
            "(res.sample(n, correct='psis')) are reliable; plain moments may be somewhat off."
        )
    return (
        f"k-hat {k:.2f} >= {KHAT_OK}: the approximation is far from the posterior (heavier tails, funnel or "
        "multimodality); do not trust its answers. Try a richer family (guide='fullrank', a flow), "
        "a reparameterised model (non-centered), more steps, or float64."
    )


def weighted_moments(x: np.ndarray, log_w: np.ndarray, probs=(0.05, 0.5, 0.95)) -> dict:
    """Self-normalised importance-weighted mean, sd and quantiles of draws `x` (S,) with log weights (S,).

    The quantile at p is the smallest draw whose cumulative normalised weight reaches p (the
    weighted empirical CDF's inverse, which for equal weights is the empirical quantile)."""
    x = np.asarray(x, np.float64)
    w = np.exp(log_w - np.logaddexp.reduce(log_w))
    mean = float(np.sum(w * x))
    sd = float(np.sqrt(np.sum(w * (x - mean) ** 2)))
    order = np.argsort(x)
    cdf = np.cumsum(w[order])
    qs = [float(x[order][min(np.searchsorted(cdf, p), len(x) - 1)]) for p in probs]
    return {"mean": mean, "sd": sd, **{f"{round(100 * p)}%": q for p, q in zip(probs, qs)}}

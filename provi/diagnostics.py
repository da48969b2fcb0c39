"""Diagnostics of a fit: PSIS k-hat (ArviZ), convergence, estimators, with verdicts in words."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import warnings

import jax
import numpy as np

__all__ = ["Diagnostics", "diagnose", "psis", "khat_verdict", "psis_resample", "psis_summary", "weighted_moments", "preload_arviz"]

_preload: list = []


def preload_arviz() -> None:
    """Start importing ArviZ in a background thread, once. Its import (matplotlib, scipy.stats,
    xarray) takes 1-2 s, which a fit that ends with a PSIS check otherwise waits for; started at
    the beginning of the fit it runs while XLA compiles (which releases the GIL)."""
    if "arviz" in sys.modules or _preload:
        return
    thread = threading.Thread(target=_import_quietly, args=("arviz",), name="provi-preload-arviz", daemon=True)
    _preload.append(thread)
    thread.start()


def _import_quietly(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:  # the import in the main thread will raise it where it matters
        pass


def psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalised log weights and the Pareto k-hat (ArviZ's `psislw`)."""
    import arviz as az

    log_w = np.asarray(log_w, dtype=np.float64)
    finite = np.isfinite(log_w)
    if not finite.all():
        log_w = np.where(finite, log_w, -np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw, k = az.psislw(log_w, reff=1.0)
    return np.asarray(lw), float(np.asarray(k))


def khat_verdict(k: float) -> str:
    """What a Pareto k-hat means for the fit, in words (Yao et al. 2018; Vehtari et al. 2024)."""
    if not np.isfinite(k):
        return "k-hat could not be computed (non-finite importance weights): do not trust this fit."
    if k < 0.5:
        return f"k-hat {k:.2f} < 0.5: the approximation is close to the posterior; its answers can be trusted."
    if k < 0.7:
        return (
            f"k-hat {k:.2f} in [0.5, 0.7): the approximation is usable, and PSIS-corrected estimates "
            "(res.sample(n, correct='psis')) are reliable; plain moments may be somewhat off."
        )
    return (
        f"k-hat {k:.2f} >= 0.7: the approximation is far from the posterior (heavier tails, funnel or "
        "multimodality); do not trust its answers. Try a richer family (guide='fullrank', a flow), "
        "a reparameterised model (non-centered), more steps, or float64."
    )


@dataclasses.dataclass
class Diagnostics:
    """A fit's diagnostics; `str(d)` reads them in words."""

    khat: float
    khat_verdict: str
    ess: float
    stop_reason: str
    steps: int
    seconds: float
    estimators: dict
    messages: list
    collapse: object = None  # provi.collapse.Collapse for amortized Gaussian latents, else None

    @property
    def trustworthy(self) -> bool:
        return bool(np.isfinite(self.khat) and self.khat < 0.7 and self.stop_reason in ("converged", "steps"))

    def __str__(self):
        lines = [
            f"Pareto k-hat: {self.khat:.3f}  (importance-sampling ESS {self.ess:.0f})",
            f"  {self.khat_verdict}",
            f"stopped: {self.stop_reason} after {self.steps} steps ({self.seconds:.2f} s)",
            "estimators: " + ", ".join(f"{k}: {v}" for k, v in self.estimators.items()),
        ]
        lines += [f"note: {m}" for m in self.messages]
        if self.collapse is not None:
            lines.append(f"latent units (KL per unit, active units):\n{self.collapse}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["trustworthy"] = self.trustworthy
        return d


def _estimators(res) -> dict:
    est = getattr(res.guide, "estimators", None)
    if est:
        return {k: v.name + (" (biased)" if getattr(v, "biased", False) else "") for k, v in est.items()}
    return {name: "Reparam" for name in getattr(res.guide, "sites", ())}


def diagnose(res, n: int = 20_000, seed=None) -> Diagnostics:
    """Diagnose a `FitResult` with `n` guide draws."""
    z, log_q = res.draws(n, seed)
    log_w = np.asarray(res.log_weights(z, log_q))
    messages = list(res.stop.notes)
    family = getattr(res.guide, "family", None)
    if family is not None and family.is_point:
        k, verdict, ess = float("nan"), "k-hat does not apply to a point estimate (guide 'delta' is MAP).", float("nan")
    else:
        lw, k = psis(log_w)
        ess = float(1.0 / np.sum(np.exp(lw) ** 2)) if np.all(np.isfinite(k)) else float("nan")
        verdict = khat_verdict(k)
    if res.stop.reason == "nonfinite":
        messages.append(res.stop.message)
        if not jax.config.jax_enable_x64:
            messages.append(
                "the fit ran in float32 and produced non-finite values; models with near-singular "
                "matrices (a Cholesky of a Gaussian-process kernel) or large cancellations need float64: "
                "call jax.config.update('jax_enable_x64', True) at start-up and pass float64 data."
            )
    elif res.stop.reason == "interrupted":
        messages.append(f"the fit was interrupted after {res.stop.steps} steps; it may not have converged.")
    elif res.stop.reason == "steps" and len(res.losses) >= 400:
        w = len(res.losses) // 10
        prev, last = res.losses[-2 * w : -w], res.losses[-w:]
        se = np.sqrt(np.var(prev) / w + np.var(last) / w)
        if np.mean(prev) - np.mean(last) > 3 * se:
            messages.append("the loss was still decreasing at the last step: run more steps.")
    for site, est in (getattr(res.guide, "estimators", None) or {}).items():
        if getattr(est, "biased", False):
            messages.append(
                f"site {site!r} uses {est.name}, a biased gradient estimator (a relaxation): the fit "
                "optimises a relaxed objective; check it against an unbiased estimator (Enumerate, MVD, Reinforce)."
            )
    if np.isfinite(log_w).mean() < 1:
        messages.append("some draws have non-finite log weights: the guide puts mass where the model has none.")
    from provi.collapse import report

    return Diagnostics(k, verdict, ess, res.stop.reason, res.stop.steps, res.stop.seconds, _estimators(res), messages, report(res))


def psis_resample(res, n: int, seed=None) -> dict:
    """`n` draws resampled by their Pareto-smoothed importance weights (raises if k-hat >= 0.7)."""
    m = max(4 * n, 20_000)
    z, lw, _ = _psis_draws(res, m, seed)
    rng = np.random.default_rng(0 if seed is None else seed)
    idx = rng.choice(m, size=n, replace=True, p=np.exp(lw - np.logaddexp.reduce(lw)))
    out = res._with_deterministic(jax.tree.map(lambda x: x[idx], z))
    return out


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


def _psis_draws(res, m: int, seed):
    z, log_q = res.draws(m, seed)
    lw, k = psis(np.asarray(res.log_weights(z, log_q)))
    if not np.isfinite(k) or k >= 0.7:
        raise ValueError(f"PSIS correction is unreliable here: {khat_verdict(k)}")
    return z, lw, k


PSIS_MIN_DRAWS = 16_000  # importance-weighted sds and tails need more draws than plain ones


def psis_summary(res, n: int = 4000, seed=None):
    """Per scalar quantity: PSIS-weighted mean, sd, 5%, 50%, 95% of max(n, 16000) guide draws (a
    DataFrame with the k-hat in `.attrs`); raises where k-hat >= 0.7."""
    import pandas as pd

    from provi.result import flatten_draws

    z, lw, k = _psis_draws(res, max(n, PSIS_MIN_DRAWS), seed)
    flat = flatten_draws(res._with_deterministic(z))
    df = pd.DataFrame.from_dict({name: weighted_moments(x, lw) for name, x in flat.items()}, orient="index")
    df.attrs["khat"] = k
    return df

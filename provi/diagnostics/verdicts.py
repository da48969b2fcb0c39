"""A fit's diagnostics in words: PSIS k-hat, how it stopped, the estimators used, what to do."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from provi.core.program import AbstractGuide
from provi.diagnostics.psis import khat_se, khat_usable, khat_verdict, psis

__all__ = ["Diagnostics", "diagnose"]


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
    collapse: object = None  # provi.diagnostics.collapse.Collapse for amortized Gaussian latents, else None
    khat_se: float = float("nan")  # Monte Carlo standard error of khat (provi.diagnostics.psis.khat_se)
    particles: object = None  # provi.diagnostics.particles.ParticleDiagnostics of a particle fit, else None

    @property
    def trustworthy(self) -> bool:
        stopped = self.stop_reason in ("converged", "steps")
        if self.particles is not None:
            return stopped and not self.particles.messages
        return khat_usable(self.khat, self.khat_se) and stopped

    def __str__(self):
        khat = f"Pareto k-hat: {self.khat:.3f} +- {self.khat_se:.3f}  (importance-sampling ESS {self.ess:.0f})"
        lines = [
            *([] if self.particles is not None else [khat]),
            f"  {self.khat_verdict}",
            f"stopped: {self.stop_reason} after {self.steps} steps ({self.seconds:.2f} s)",
            "estimators: " + ", ".join(f"{k}: {v}" for k, v in self.estimators.items()),
        ]
        lines += [f"note: {m}" for m in self.messages]
        if self.collapse is not None:
            lines.append(f"latent units (KL per unit, active units):\n{self.collapse}")
        if self.particles is not None:
            lines.append(str(self.particles))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["particles"] is not None:
            d["particles"]["spread"] = np.asarray(d["particles"]["spread"]).tolist()
        d["trustworthy"] = self.trustworthy
        return d


def _estimators(guide: AbstractGuide) -> dict:
    if guide.estimators:
        return {k: v.name + (" (biased)" if v.biased else "") for k, v in guide.estimators.items()}
    return {name: "Reparam" if guide.has_density else "particles" for name in guide.sites}


def diagnose(log_w: np.ndarray, losses: np.ndarray, stop, guide: AbstractGuide, collapse=None, particles=None) -> Diagnostics:
    """Diagnose a fit from the log importance weights of guide draws, its losses, its
    `provi.engine.schedule.StopInfo` and its guide program (and, for a particle guide, which has
    no density, its `ParticleDiagnostics`)."""
    log_w = np.asarray(log_w)
    messages = list(stop.notes)
    se = float("nan")
    if guide.is_point:
        k, verdict, ess = float("nan"), "k-hat does not apply to a point estimate (guide 'delta' is MAP).", float("nan")
    elif not guide.has_density:
        k, verdict, ess = float("nan"), "k-hat does not apply to particles (they have no density): see the Stein discrepancy.", float("nan")
    else:
        lw, k = psis(log_w)
        ess = float(1.0 / np.sum(np.exp(lw) ** 2)) if np.all(np.isfinite(k)) else float("nan")
        se = khat_se(k, len(log_w))
        verdict = khat_verdict(k, se)
    if stop.reason == "nonfinite":
        messages.append(stop.message)
        if not jax.config.jax_enable_x64:
            messages.append(
                "the fit ran in float32 and produced non-finite values; models with near-singular "
                "matrices (a Cholesky of a Gaussian-process kernel) or large cancellations need float64: "
                "call jax.config.update('jax_enable_x64', True) at start-up and pass float64 data."
            )
    elif stop.reason == "interrupted":
        messages.append(f"the fit was interrupted after {stop.steps} steps; it may not have converged.")
    elif stop.reason == "steps" and len(losses) >= 400 and guide.has_density:  # SVGD's loss is no objective
        w = len(losses) // 10
        prev, last = losses[-2 * w : -w], losses[-w:]
        se = np.sqrt(np.var(prev) / w + np.var(last) / w)
        if np.mean(prev) - np.mean(last) > 3 * se:
            messages.append("the loss was still decreasing at the last step: run more steps.")
    for site, est in guide.estimators.items():
        if est.biased:
            messages.append(
                f"site {site!r} uses {est.name}, a biased gradient estimator (a relaxation): the fit "
                "optimises a relaxed objective; check it against an unbiased estimator (Enumerate, MVD, Reinforce)."
            )
    if log_w.size and np.isfinite(log_w).mean() < 1:
        messages.append("some draws have non-finite log weights: the guide puts mass where the model has none.")
    return Diagnostics(k, verdict, ess, stop.reason, stop.steps, stop.seconds, _estimators(guide), messages, collapse, se, particles)

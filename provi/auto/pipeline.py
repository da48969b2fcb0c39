"""The stages of `guide="auto"` in order (see `provi.auto`): the first Gaussian, non-centring,
several modes, the flow, and the verdict."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from provi.auto.modes import gaussian_u, several_modes
from provi.auto.tails import radial_distances, tail_df
from provi.core.reparam import decentrable_sites, decentre
from provi.defaults import FLOW_LEARNING_RATE, FLOW_MAX_DIM, FLOW_MAX_STEPS, KHAT_DRAWS, KHAT_FIRST_DRAWS, KHAT_GOOD, KHAT_OK
from provi.diagnostics import khat_se, khat_usable, psis
from provi.engine.step import check_objective, default_optimizer
from provi.errors import ObjectiveError
from provi.guides import FullRank, RealNVP, StudentT
from provi.guides.student import DF_START
from provi.objectives import STL
from provi.programs import FamilyGuide

__all__ = ["fit_auto", "path_elbo"]


path_elbo = STL  # the path-derivative ("sticking the landing") ELBO, used for the flow stage
NONCENTRED_BELOW = 0.25  # a learned centredness below this: also try the fully non-centred form


def _flow_family(dim: int):
    return RealNVP(layers=4, hidden=max(16, min(64, 2 * dim)))


def fit_auto(fit_family, *, steps, seed, objective, optimizer):
    """Run the auto pipeline; `fit_family(guide, objective, optimizer, steps, start, early=None,
    model=None)` runs one family fit and returns its `FitResult` (`start=None`: the Laplace start;
    else `(program, params, consts)` to start from; `model`: another model than the user's)."""
    first = fit_family("auto", check_objective(objective), optimizer, steps, None)
    notes, stage_notes = first.stop.notes, []
    fit_family = _stage_warnings_as_notes(fit_family, stage_notes)  # the later stages: auto may discard them
    k1 = _khat(first, seed)
    best, k_best, tried = first, k1, [f"{type(first.guide.family).__name__} (k-hat {k1:.2f})"]
    if _not_close(k1) and first.stop.reason != "nonfinite":
        best, k_best = _non_centre(first, k1, tried, fit_family, objective, optimizer, steps, seed)
    if best.stop.reason != "nonfinite":
        best, k_best = several_modes(best, k_best, tried, fit_family, check_objective(objective), optimizer, steps, seed, _khat)
    dim = best.guide.space.dim
    if _not_close(k_best) and best.stop.reason != "nonfinite" and isinstance(best.guide.family, FullRank) and dim <= FLOW_MAX_DIM:
        gauss = best  # heavier tails, then a flow, each started from the best Gaussian
        for make in (_fit_student, _fit_flow):
            if not _not_close(k_best):
                break
            if make is _fit_student and khat_usable(k_best, khat_se(k_best, best.auto["khat_draws"])):
                df = tail_df(*radial_distances(gauss, gauss.auto["khat_draws"], seed), dim)
                if df >= DF_START:  # usable, and the posterior's tails are no heavier than the Gaussian's: settle
                    tried.append(f"a Student-t's tails on the Gaussian's importance-weighted draws (df {df:.0f} >= {DF_START:.0f}: "
                                 "no heavier than the Gaussian's, so no Student-t fit)")
                    break
            res, label = make(gauss, fit_family, objective, optimizer, steps, seed)
            if res is None:
                continue
            k = _khat(res, seed)
            tried.append(f"{label} (k-hat {k:.2f})")
            seconds = best.stop.seconds + res.stop.seconds
            improved = _better(k, k_best - khat_se(k_best, best.auto["khat_draws"]))
            if _better(k, k_best):
                best, k_best = res, k
            best.stop.seconds = seconds
            if khat_usable(k_best, khat_se(k_best, best.auto["khat_draws"])) and not improved:
                break  # usable, and the next family did not do better by a standard error: settle
    se = khat_se(k_best, best.auto["khat_draws"])
    usable = khat_usable(k_best, se)
    best.stop.notes = list(notes) + stage_notes + _verdict_notes(k_best, se, tried, dim)
    best.correct = "psis" if usable else None
    best.auto = {"tried": tried, "khat": k_best, "khat_se": se, "usable": usable, **(best.auto or {})}
    return best


def _stage_warnings_as_notes(fit_family, notes: list):
    """`fit_family` with the RuntimeWarnings of each fit (a loss that turned non-finite, which
    stops that fit at its last finite state) kept as `notes` of the final result instead of shown:
    auto judges each stage by its k-hat and may discard it. Other warnings pass through."""

    def run(guide, *args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_family(guide, *args, **kwargs)
        for w in caught:
            if issubclass(w.category, RuntimeWarning):
                notes.append(f"auto: the {res.guide.name} stage: {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return res

    return run


def _non_centre(first, k1, tried, fit_family, objective, optimizer, steps, seed):
    """Stage 4: `(best fit, its k-hat)` of `first` and its refits with the hierarchy non-centred,
    learned (VIP) and, where VIP's centredness heads for 0, fully; `tried` records them."""
    best, k_best = first, k1

    def consider(res, label):
        nonlocal best, k_best
        k = _khat(res, seed)
        tried.append(f"{label} (k-hat {k:.2f})")
        if _better(k, k_best):
            res.stop.seconds += best.stop.seconds
            best, k_best = res, k

    vip = _fit_decentred(first, fit_family, objective, optimizer, steps)
    if vip is None:
        return best, k_best
    learned = {k[: -len("_centered")]: np.asarray(v) for k, v in vip.model_params().items() if k.endswith("_centered")}
    fully = [s for s in vip.reparam["sites"] if s not in learned]  # multivariate normals: non-centred fully
    what = ([f"VIP; centredness {', '.join(f'{k} {float(np.mean(v)):.2f}' for k, v in learned.items())}"] if learned else []) + \
        ([f"{', '.join(fully)} fully, through the Cholesky factor"] if fully else [])
    consider(vip, f"the same with {'learned ' if learned else ''}non-centring ({'; '.join(what)})")
    if k_best >= KHAT_GOOD and learned and max(float(np.max(v)) for v in learned.values()) < NONCENTRED_BELOW:
        # VIP heads for the fully non-centred form but need not get there: fit that form too
        consider(_fit_decentred(first, fit_family, objective, optimizer, steps, centered=0.0), "the same fully non-centred")
    return best, k_best


def _fit_decentred(res, fit_family, objective, optimizer, steps, centered=None):
    """The auto Gaussian refitted on the model with its hierarchical loc-scale sites non-centred:
    partially, each site's centredness learned (`centered=None`, `provi.core.reparam`), or to
    `centered`; None when the model has no such site."""
    model = res.model.model
    sites = decentrable_sites(model, res.args, res.kwargs)
    if not sites:
        return None
    res = fit_family("auto", check_objective(objective), optimizer, steps, None, model=decentre(model, sites, centered))
    res.reparam = {"sites": list(sites), "centered": centered}
    return res


def _khat(res, seed) -> float:
    """The fit's Pareto k-hat, on `KHAT_FIRST_DRAWS` draws where that already puts it below
    `KHAT_GOOD` by two standard errors, else on `KHAT_DRAWS` (importance weights cost draws x data
    points); the count is kept in `res.auto["khat_draws"]`, so that `diagnostics()` and the PSIS
    corrections judge the very same draws."""
    k = float("inf")
    for n in (KHAT_FIRST_DRAWS, KHAT_DRAWS):
        log_w = res.importance_log_weights(n, seed)
        k = psis(log_w)[1] if np.all(np.isfinite(log_w)) else float("inf")
        if k + 2 * khat_se(k, n) < KHAT_GOOD:
            break
    res.auto = {**(res.auto or {}), "khat_draws": n}
    return k


def _not_close(k: float) -> bool:
    return not np.isfinite(k) or k >= KHAT_GOOD


def _better(k: float, than: float) -> bool:
    """Whether k-hat `k` is finite and below `than` (an infinite k-hat is the worst)."""
    return bool(np.isfinite(k) and (not np.isfinite(than) or k < than))


def _fit_student(gauss, fit_family, objective, optimizer, steps, seed):
    """A full-rank Student-t with learned degrees of freedom, started at the fitted Gaussian (the
    same location, scale and whitening; df 30): `(fit, label)`."""
    program = FamilyGuide(gauss.guide.space, StudentT())
    params = {**gauss.params["guide"], "log_df": jnp.asarray(np.log(DF_START), gauss.params["guide"]["loc"].dtype)}
    start = (program, params, gauss.consts, gauss.params["model"])
    res = _fit_other(fit_family, program.family, objective, optimizer, steps, start, model=gauss.model.model)
    res.reparam = gauss.reparam
    df = float(np.exp(res.params["guide"]["log_df"]))
    return res, f"a full-rank Student-t from the fitted Gaussian (df {df:.1f})"


def _fit_flow(gauss, fit_family, objective, optimizer, steps, seed):
    """A RealNVP flow in the space whitened by the fitted Gaussian, starting as that Gaussian:
    `(fit or None, label)`."""
    flow = _flow_family(gauss.guide.space.dim)
    start = _flow_start(gauss, flow, seed)
    if start is None:
        return None, ""
    opt = default_optimizer(FLOW_LEARNING_RATE) if optimizer is None else optimizer
    res = _fit_other(fit_family, flow, objective, opt, steps or FLOW_MAX_STEPS, start, early=steps is None,
                     model=gauss.model.model)
    res.reparam = gauss.reparam
    return res, "RealNVP flow from the fitted Gaussian"


def _fit_other(fit_family, family, objective, optimizer, steps, start, **kwargs):
    """A non-Gaussian stage's fit with the user's objective, or with `path_elbo` where there is
    none or it applies to Gaussian families only (`provi.PriceELBO`: an `ObjectiveError` at its
    first trace, before any step), noted in the result."""
    if objective is None:
        return fit_family(family, path_elbo, optimizer, steps, start, **kwargs)
    try:
        return fit_family(family, objective, optimizer, steps, start, **kwargs)
    except ObjectiveError as exc:
        res = fit_family(family, path_elbo, optimizer, steps, start, **kwargs)
        res.stop.notes = [*res.stop.notes, f"auto: the {type(family).__name__} stage used the path-derivative ELBO: {exc}"]
        return res


def _flow_start(res, flow, seed):
    """The flow's parameters at the identity and the space whitened by the fitted full-rank normal
    (and the model's parameters where the fit left them: a learned centredness)."""
    program = res.guide
    shift, P = gaussian_u(res)
    if not np.all(np.isfinite(P)) or not np.all(np.isfinite(shift)):
        return None
    new = FamilyGuide(program.space, flow)
    d = program.space.dim
    fparams = flow.init(jax.random.PRNGKey(seed + 7), d, jnp.zeros((d,)), jnp.ones((d,)))
    return new, fparams, new.consts(shift, P), res.params["model"]


def _verdict_notes(k: float, se: float, tried: list[str], dim: int) -> list[str]:
    head = "auto: tried " + "; ".join(tried) + "."
    if np.isfinite(k) and k < KHAT_GOOD:
        return [head + f" k-hat {k:.2f} < {KHAT_GOOD}: the fit is close to the posterior; summary() reports PSIS-corrected moments."]
    if khat_usable(k, se):
        return [
            head + f" k-hat {k:.2f} is in [{KHAT_GOOD}, {KHAT_OK}): plain moments may be somewhat off; summary() gives "
            "PSIS-corrected moments and res.sample(n, correct='psis') importance-resampled draws."
        ]
    more = "" if dim <= FLOW_MAX_DIM else f" (no flow was tried above {FLOW_MAX_DIM} dimensions)"
    what = (f"k-hat {k:.2f} +- {se:.2f} is within one Monte Carlo standard error of {KHAT_OK}"
            if np.isfinite(k) and k < KHAT_OK else f"k-hat {k:.2f} >= {KHAT_OK}")
    return [
        head + f" {what}: no family tried{more} fits this posterior well; do not trust the "
        "answers. This is typical of a funnel (reparameterise the model: non-centered hierarchies), "
        "multimodality, or heavy tails; try guide=provi.guides.NeuralSplineFlow() or IAF() with more "
        "steps, or float64 (jax.config.update('jax_enable_x64', True)) if values overflow."
    ]

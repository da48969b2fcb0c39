"""`FitResult`: draws, predictions, summaries, InferenceData and diagnostics of a fitted guide;
saving and loading it in open formats.

Floor 7: takes what the engine made (programs, parameters, losses, `StopInfo`) and asks floor 6
(`provi.diagnostics`) for PSIS and verdicts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from provi import idata
from provi.core.enum import draw_enumerated
from provi.core.objective import Objective
from provi.core.prior import GaussianPrior
from provi.core.space import LatentSpace
from provi.core.trace import OwnInfer, Unobserved, constrain_params
from provi.defaults import DETERMINISTIC_BLOCK, DRAW_BLOCK, KHAT_DRAWS, KHAT_FIRST_DRAWS, PSIS_MIN_DRAWS
from provi.diagnostics import (Diagnostics, diagnose, evaluate, khat_se, khat_usable, khat_verdict, particle_diagnostics,
                               posterior_collapse, psis, weighted_moments)
from provi.engine import draws as compiled
from provi.engine.compile import cached
from provi.engine.schedule import StopInfo
from provi.engine.step import Setup, VIState, host_key
from provi.errors import ModelError
from provi.persist import atomic_write, flatten_tree
from provi.programs import FamilyGuide

__all__ = ["FitResult", "FORMAT", "prepare_khat"]

# provi-fit/2: Gaussian scales are stored as logarithms (provi-fit/1 stored softplus inverses, which
# would load into the same names with another meaning, so version 1 files are refused).
FORMAT = "provi-fit/2"


def _flat_names(name: str, shape: tuple) -> list[str]:
    if shape == ():
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


def flatten_draws(draws: dict) -> dict[str, np.ndarray]:
    """{site: (S, ...)} -> {"site[i,j]": (S,)} with 0-based indices (ArviZ's convention)."""
    out = {}
    for name, x in draws.items():
        x = np.asarray(x)
        for label, idx in zip(_flat_names(name, x.shape[1:]), np.ndindex(*x.shape[1:]) if x.ndim > 1 else [()]):
            out[label] = x[(slice(None),) + idx]
    return out


@dataclasses.dataclass
class FitResult:
    """The outcome of `provi.fit`.

    Attributes: `params` (variational and model parameters, unconstrained storage), `losses` (one
    loss, the negative objective estimate, per step), `stop` (why the fit stopped).
    """

    data: Any  # the array leaves of the model's arguments
    layout: Any  # and their static layout (see provi.engine.layout.split_data)
    model: Any
    guide: Any
    params: Any
    consts: Any
    losses: np.ndarray
    args: tuple
    kwargs: dict
    objective: Any
    stop: StopInfo
    seed: int = 0
    correct: str | None = None  # the correction summary() applies by default ("psis" when guide="auto" advises it)
    auto: dict | None = None  # what guide="auto" tried, and the k-hat of the fit it kept
    reparam: dict | None = None  # {"sites", "centered"}: the sites auto non-centred (provi.core.reparam)
    # log importance weights already computed, {(n, seed): (params, consts, log_w)}: auto's k-hat, diagnostics()
    # and the PSIS corrections judge the same draws, computed once (valid while params and consts are the same objects)
    _log_w_memo: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    # --- draws -------------------------------------------------------------------------------
    def _seed(self, seed) -> int:
        """The seed draws use: `seed`, or the fit's seed + 1 for None."""
        return self.seed + 1 if seed is None else int(seed)

    def _key(self, seed):
        return host_key(self._seed(seed))

    @classmethod
    def from_state(cls, alg: Setup, state: VIState, losses=None, seed: int = 0, stop: StopInfo | None = None) -> "FitResult":
        """The result of a fit run with the step API (`provi.setup`): draws, summaries and
        diagnostics at `state`'s parameters; `losses` the losses of the steps run (`info.loss`)."""
        losses = np.zeros((0,)) if losses is None else np.asarray(losses)
        stop = StopInfo(reason="steps", steps=int(state.step)) if stop is None else stop
        return cls(data=alg.data, layout=alg.layout, model=alg.model, guide=alg.guide, params=state.params,
                   consts=state.consts, losses=losses, args=alg.args, kwargs=alg.kwargs, objective=alg.objective,
                   stop=stop, seed=seed)

    def model_params(self) -> dict:
        """The model's own `numpyro.param` values, constrained."""
        return constrain_params(self.params["model"], self.model.info.params)

    @functools.cached_property
    def whole(self) -> tuple:
        """`(model, guide)` programs with every subsampled plate at its full range: results,
        predictions and diagnostics cover all the data, row i of a local latent for data point i."""
        plates = {**self.model.plates, **self.guide.plates}
        full = {name: jnp.arange(size) for name, (size, _) in plates.items()}
        return self.model.replaying(full), self.guide.replaying(full)

    def _compiled_model(self):
        """`whole`'s model program as the compiled result programs take it (a static argument, so
        compared by identity): one per model function and data layout, as the training loop is
        cached, so that auto's refits of one model trace and compile their importance weights once."""
        return _result_model(self.whole[0], self.layout)

    def draws(self, n: int, seed: int | None = None) -> tuple[dict, np.ndarray]:
        """`n` draws of the latent sites (constrained) from the guide, and log q of each (over the
        whole data: subsampled plates at their full range). More than `DRAW_BLOCK` draws come in
        blocks of that many (one compiled program), the first with `seed`'s key, so the first
        `DRAW_BLOCK` of a larger set are `draws(DRAW_BLOCK, seed)`."""
        return self._blocks(n, seed, lambda i, z, log_q: (z, log_q))

    def weighted_draws(self, n: int, seed: int | None = None) -> tuple[dict, np.ndarray]:
        """`draws(n, seed)` and their log importance weights log p(x, z) - log q(z) (host
        arrays), computed block by block; a first block whose weights are known (from
        `importance_log_weights(DRAW_BLOCK, seed)`, as auto's k-hat computes first) is not
        weighed again."""
        memo = self._memo(n, seed)
        if memo is not None:
            return self.draws(n, seed)[0], memo  # the guide's draws alone: no model density
        first = self._memo(DRAW_BLOCK, seed) if n > DRAW_BLOCK else None  # the first block's weights, known

        def each(i, z, log_q):
            return (z, first) if i == 0 and first is not None else (z, self.log_weights(z, log_q))

        z, log_w = self._blocks(n, seed, each)
        log_w = np.asarray(log_w)
        self._log_w_memo[(int(n), self._seed(seed))] = (self.params, self.consts, log_w)
        return z, log_w

    def importance_log_weights(self, n: int, seed: int | None = None) -> np.ndarray:
        """The log importance weights of `weighted_draws(n, seed)`, computed once per `(n, seed)`."""
        memo = self._memo(n, seed)
        return memo if memo is not None else self.weighted_draws(n, seed)[1]

    def _memo(self, n: int, seed) -> np.ndarray | None:
        params, consts, log_w = self._log_w_memo.get((int(n), self._seed(seed)), (None, None, None))
        return log_w if params is self.params and consts is self.consts else None

    def _blocks(self, n: int, seed, each) -> tuple[dict, np.ndarray | jax.Array]:
        n, key = int(n), self._key(seed)
        block = lambda i, size: each(i, *compiled.run_draw(self.whole[1], self.params["guide"], self.consts, size, key, np.int32(i), self.data, self.layout))  # noqa: E731
        if n <= DRAW_BLOCK:
            return block(0, n)
        parts = [block(i, DRAW_BLOCK) for i in range(-(-n // DRAW_BLOCK))]
        return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n], *parts)  # on the host: no program per shape

    def sample(self, n: int = 1000, seed: int | None = None, correct: str | None = None) -> dict[str, np.ndarray]:
        """`n` posterior draws: {site: array (n, ...)} for latent and deterministic sites, constrained."""
        if correct is not None:
            if correct != "psis":
                raise ValueError(f"unknown correction {correct!r}: use 'psis' or None")
            return self._psis_resample(n, seed)
        z, _ = self.draws(n, seed)
        return self._with_deterministic(z, seed)

    def discrete(self, z: dict, seed: int | None = None, temperature: int = 1) -> dict:
        """The model's enumerated sites at each draw of `z` ({site: (S, ...)}, the other latent
        sites): drawn from their exact joint conditional (`temperature=1`; forward filtering,
        backward sampling along chains) or its most probable assignment (`temperature=0`; Viterbi
        along chains). Empty for a model with no enumerated sites. A chain written with NumPyro's
        `scan` is drawn by provi's forward filtering, backward sampling when its states are the
        model's only enumerated sites. Other enumerated sites inside `scan`, and long chains written
        with `markov` (along which NumPyro's `infer_discrete` needs memory exponential in the
        length), are summed out of the fit exactly but cannot be drawn: this raises, `predictive`
        raises, and `sample` leaves them out (`res.model.info.undrawable` says why)."""
        info = self.model.info
        if not info.enumerated:
            return {}
        if info.undrawable:
            raise ModelError(
                f"{info.undrawable}: provi sums them out of the fit exactly but cannot draw them yet; "
                "res.sample() returns the continuous latent sites"
            )
        sites = {s.name: s.shape for s in info.enumerated}
        fixed, model = self.model_params(), self.whole[0].model
        n = len(next(iter(z.values())))
        keys = jax.random.split(jax.random.fold_in(self._key(seed), 0xD15C), n)
        one = lambda zi, key: draw_enumerated(model, key, self.args, self.kwargs, {**fixed, **zi}, sites, info.max_plate_nesting, temperature,
                                                    info.chain)  # noqa: E731
        return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(one))(z, keys).items()}

    def discrete_map(self, n: int = 1000, seed: int | None = None) -> dict:
        """The most probable assignment of the enumerated sites (Viterbi along chains) given each of
        `n` guide draws of the other latent sites: {site: (n, ...)}."""
        z, _ = self.draws(n, seed)
        return self.discrete(z, seed, temperature=0)

    def _with_deterministic(self, z: dict, seed: int | None = None) -> dict:
        if self.model.info.undrawable:
            warnings.warn(
                f"provi: {self.model.info.undrawable}, so sample() returns the continuous latent sites only "
                "(no enumerated or deterministic sites, which may depend on them)",
                stacklevel=3,
            )
            return {k: np.asarray(v) for k, v in z.items()}
        z = {**z, **self.discrete(z, seed)}
        names = tuple(self.model.info.deterministic)
        out = {k: np.asarray(v) for k, v in z.items()}
        if names:
            n = len(next(iter(z.values())))
            size = min(n, DETERMINISTIC_BLOCK)  # whole blocks of one shape (the last padded): one program for any n
            padded = {k: np.concatenate([v, v[:(-n) % size]]) for k, v in z.items()}
            parts = [compiled.deterministic(self._compiled_model(), names, self.model_params(), {k: v[i:i + size] for k, v in padded.items()},
                                    self.data, self.layout) for i in range(0, n, size)]
            out.update({k: np.concatenate([np.asarray(p[k]) for p in parts])[:n] for k in names})
        return out

    def as_prior(self, model: Callable | None = None, sites=None, n: int = KHAT_DRAWS, seed: int | None = None) -> Callable:
        """`model` (the fitted model by default) with the fitted approximation of the latent `sites`
        (every continuous latent site by default) as their prior: the posterior that becomes the
        next prior, so `provi.fit(res.as_prior(), *new_data)` updates it with new data.

        The approximation is the guide's Gaussian over the unconstrained latent vector, exact for
        the Gaussian families ("meanfield", "fullrank", "lowrank", "laplace"); for a flow or a
        NumPyro guide it is the Gaussian with the mean and covariance of `n` of its draws (an
        approximation of the approximation). Each site keeps its support (the Gaussian lives in
        the unconstrained space). Everything else in `model` (other sites, plates, data,
        `numpyro.param` values, which the next fit learns afresh) is unchanged."""
        model = self.model.model if model is None else model
        space = _fitted_space(self.guide, self.model.info)
        if isinstance(self.guide, FamilyGuide):
            mean, cov = self.guide.moments(self.params["guide"], self.consts)
        else:
            z, _ = self.draws(n, seed)
            u = np.asarray(jax.vmap(space.unconstrain)({k: jnp.asarray(z[k]) for k in space.names}), np.float64)
            mean, cov = u.mean(0), np.atleast_2d(np.cov(u, rowvar=False))
        return GaussianPrior(model, space, space.names if sites is None else tuple(sites), mean, cov)

    def predictive(self, n: int = 1000, *args, seed: int | None = None, **kwargs) -> dict[str, np.ndarray]:
        """Posterior predictive draws of every observed site (and deterministic sites) at `args`
        (the fitted data's arguments when none are given): each observed site is drawn from its
        distribution rather than conditioned on its data, which stays in place (so a model that
        runs `scan` over its data, or takes sizes from it, still runs)."""
        args = args if args else self.args
        kwargs = {**self.kwargs, **kwargs}
        z, _ = self.draws(n, seed)
        z = {**z, **self.discrete(z, seed)}
        sites = list(self.model.info.observed) + list(self.model.info.deterministic)
        model = Unobserved(OwnInfer(self.whole[0].model), self.model.info.observed)
        pred = Predictive(model, posterior_samples=z, params=self.model_params(), return_sites=sites)
        out = pred(self._key(seed), *args, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

    # --- summaries ---------------------------------------------------------------------------
    def summary(self, n: int = 4000, seed: int | None = None, correct: str | None = "default"):
        """Per scalar quantity: mean, sd, 5%, 50% and 95% quantiles (a pandas DataFrame).

        `correct="psis"`: Pareto-smoothed importance-weighted moments and quantiles of max(n, 16000)
        guide draws (raises where k-hat >= 0.7); None: plain guide moments; "default": what the fit
        advises (`self.correct`: "psis" when guide="auto" found k-hat < 0.7)."""
        import pandas as pd  # heavy: imported when first needed

        correct = self.correct if correct == "default" else correct
        if correct == "psis":
            return self._psis_summary(n, seed)
        if correct is not None:
            raise ValueError(f"unknown correction {correct!r}: use 'psis' or None")
        flat = flatten_draws(self.sample(n, seed))
        rows = {
            k: {
                "mean": float(np.mean(v)),
                "sd": float(np.std(v, ddof=1)),
                "5%": float(np.quantile(v, 0.05)),
                "50%": float(np.quantile(v, 0.5)),
                "95%": float(np.quantile(v, 0.95)),
            }
            for k, v in flat.items()
        }
        return pd.DataFrame.from_dict(rows, orient="index")

    def to_arviz(self, n: int = 1000, seed: int | None = None):
        """ArviZ InferenceData: posterior (one chain of `n` guide draws), sample_stats (the loss trace
        and each draw's log importance weight), observed_data; the groups of `to_xarray`."""
        import arviz as az  # heavy: imported when first needed

        return az.InferenceData(**self.to_xarray(n, seed))

    def to_xarray(self, n: int = 1000, seed: int | None = None) -> dict:
        """The groups of `to_arviz` as `xarray.Dataset`s ({"posterior", "sample_stats",
        "observed_data"}), in ArviZ's layout (`provi.idata`), without importing ArviZ."""
        import xarray as xr  # heavy: imported when first needed

        z, log_w = self.weighted_draws(n, seed)
        posterior = idata.dataset({k: v[None] for k, v in self._with_deterministic(z).items()})
        stats = xr.Dataset(
            {"loss": (("step",), np.asarray(self.losses))}
            | ({"log_weight": (("chain", "draw"), log_w[None])} if self.guide.has_density else {}),
            coords={"step": np.arange(len(self.losses)), "chain": [0], "draw": np.arange(n)},
        )
        observed = idata.dataset({k: np.asarray(v) for k, v in self.model.info.observed.items() if v is not None}, draws=False)
        return {"posterior": posterior, "sample_stats": stats, "observed_data": observed}

    def log_weights(self, z: dict, log_q) -> jax.Array:
        """log p(x, z) - log q(z) for guide draws `z` with leading axis."""
        return compiled.run_log_weights(self._compiled_model(), self.params["model"], z, log_q, self.data, self.layout)

    def diagnostics(self, n: int | None = None, seed: int | None = None) -> Diagnostics:
        """PSIS k-hat (from `n` guide draws: the k-hat estimate is unreliable with few draws), convergence
        and the estimators used, with verdicts in words. For a `guide="auto"` fit, the default `n`
        and `seed` judge the very draws its pipeline judged, so the k-hat here is the one in its notes
        (k-hat varies from one set of draws to the next, most near 0.7)."""
        if not self.guide.has_density:  # particles: a Stein discrepancy instead of k-hat
            particles = particle_diagnostics(self.model, self.guide, self.params, self.consts, self.data, self.layout)
            return diagnose(np.zeros((0,)), self.losses, self.stop, self.guide, particles=particles)
        if n is None and seed is None and self.auto is not None:
            n, seed = self._auto_draws, self.seed  # fit_auto's k-hat draws: res.draws(n, seed)
        n = KHAT_DRAWS if n is None else n
        log_w = self.importance_log_weights(n, seed)
        try:
            collapse = self.posterior_collapse()
        except Exception:  # a diagnostic must never break diagnostics
            collapse = None
        return diagnose(log_w, self.losses, self.stop, self.guide, collapse)

    @property
    def _auto_draws(self) -> int:
        return int(self.auto.get("khat_draws", KHAT_DRAWS))  # fits saved before it was recorded: KHAT_DRAWS

    def posterior_collapse(self, *args, plate: str = "data", threshold: float | None = None, seed: int = 0, **kwargs):
        """KL per latent dimension and active units of an amortized Normal guide over the data at
        `args`/`kwargs` (the fitted data by default): see `provi.diagnostics.collapse`."""
        args = args if args else self.args
        kw = {} if threshold is None else {"threshold": threshold}
        return posterior_collapse(self.model, self.guide, self.params, args, {**self.kwargs, **kwargs}, plate=plate, seed=seed, **kw)

    def evaluate(self, objective: Objective, n: int = 1000, seed: int = 0) -> tuple[float, float]:
        """`(mean, standard error)` of `n` independent estimates of `objective` at the fitted
        parameters (e.g. a bound of a trained guide, or to compare objectives)."""
        return evaluate(self.model, self.guide, self.params, self.consts, self.data, self.layout, objective, n, seed)

    def _psis_draws(self, m: int, seed):
        """`m` guide draws with their smoothed log weights; raises where k-hat >= 0.7. For a
        `guide="auto"` fit, by default the very draws auto judged (and so the same k-hat): a fit is
        never "usable" in auto's notes and "unreliable" here."""
        if seed is None and self.auto is not None and m <= KHAT_DRAWS:
            m, seed = self._auto_draws, self.seed  # fit_auto's k-hat draws: res.draws(m, seed)
        z, log_w = self.weighted_draws(m, seed)
        lw, k = psis(log_w)
        # the margin of one standard error belongs to the decision, made once: an auto fit judged
        # usable stays so on other draws unless their k-hat crosses 0.7 itself
        se = 0.0 if self.auto is not None and self.auto.get("usable") else khat_se(k, m)
        if not khat_usable(k, se):
            raise ValueError(f"PSIS correction is unreliable here: {khat_verdict(k, se)}")
        return z, lw, k

    def _psis_resample(self, n: int, seed=None) -> dict:
        """`n` draws resampled by their Pareto-smoothed importance weights (raises if k-hat >= 0.7)."""
        z, lw, _ = self._psis_draws(max(4 * n, KHAT_DRAWS), seed)
        m = len(lw)
        rng = np.random.default_rng(0 if seed is None else seed)
        idx = rng.choice(m, size=n, replace=True, p=np.exp(lw - np.logaddexp.reduce(lw)))
        return self._with_deterministic(jax.tree.map(lambda x: x[idx], z))

    def _psis_summary(self, n: int = 4000, seed=None):
        """Per scalar quantity: PSIS-weighted mean, sd, 5%, 50%, 95% of max(n, 16000) guide draws (a
        DataFrame with the k-hat in `.attrs`); raises where k-hat >= 0.7."""
        import pandas as pd  # heavy: imported when first needed

        z, lw, k = self._psis_draws(max(n, PSIS_MIN_DRAWS), seed)
        flat = flatten_draws(self._with_deterministic(z))
        df = pd.DataFrame.from_dict({name: weighted_moments(x, lw) for name, x in flat.items()}, orient="index")
        df.attrs["khat"] = k
        return df

    # --- persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write `params.npz`, `consts.npz`, `losses.npy` and `meta.json` into directory `path`."""
        path = pathlib.Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "params.npz", **flatten_tree(self.params))
        np.savez(path / "consts.npz", **flatten_tree(self.consts))
        np.save(path / "losses.npy", np.asarray(self.losses))
        s = self.stop
        meta = {
            "format": FORMAT,
            "guide": self.guide.spec(),
            "objective": repr(self.objective),
            "seed": self.seed,
            "stop": {"reason": s.reason, "steps": s.steps, "message": s.message, "notes": s.notes,
                     "seconds": None if not np.isfinite(s.seconds) else float(s.seconds)},
            "latent_sites": list(self.model.info.latent_names),
            "correct": self.correct,  # the correction summary() applies by default (guide="auto")
            "auto": None if self.auto is None else {**self.auto, "tried": list(self.auto["tried"]), "khat": float(self.auto["khat"]),
                                                    "khat_se": float(self.auto.get("khat_se", float("nan"))),
                                                    "usable": bool(self.auto.get("usable", False))},
            "reparam": self.reparam,
        }
        atomic_write(path / "meta.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))

    def __repr__(self):
        return (
            f"FitResult(guide={self.guide.name}, objective={self.objective!r}, steps={self.stop.steps}, "
            f"stop={self.stop.reason!r}, final loss={self.final_loss:.4g})"
        )

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10% of steps (at least one)."""
        if len(self.losses) == 0:
            return float("nan")
        k = max(1, len(self.losses) // 10)
        return float(np.mean(self.losses[-k:]))


def _result_model(model, layout):
    return cached(("result model", model.model, layout), lambda: model)


def prepare_khat(model, guide, params, consts, data, layout) -> None:
    """Compile the programs of auto's first k-hat (`KHAT_FIRST_DRAWS` draws of `guide` and their
    importance weights, `provi.engine.draws.prepare`) for a fit of these shapes on the compiler
    thread after its training loop, while the fit's start runs. Models with subsampled plates,
    whose results replay them whole, compile theirs when first drawn."""
    if not model.plates and not guide.plates:
        compiled.prepare(guide, _result_model(model, layout), params, consts, KHAT_FIRST_DRAWS, data, layout)


def _fitted_space(guide, info) -> LatentSpace:
    """The fitted latent space: a family guide's own, else that of the model's continuous latent sites."""
    return guide.space if isinstance(guide, FamilyGuide) else LatentSpace.of(info.latents)

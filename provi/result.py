"""`FitResult`: draws, predictions, summaries and InferenceData from a fitted guide."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FitResult", "StopInfo"]


@dataclasses.dataclass
class StopInfo:
    """Why and where a fit stopped: "steps", "converged", "interrupted" or "nonfinite"."""

    reason: str
    steps: int
    bad_step: int | None = None
    message: str = ""
    notes: list = dataclasses.field(default_factory=list)
    seconds: float = float("nan")


@functools.partial(jax.jit, static_argnums=(0, 3, 6))
def _draw(guide, params, consts, n, key, data, layout):
    from provi.loop import join_data

    args, kwargs = join_data(data, layout)
    return guide.sim(params, consts, key, n, args, kwargs, [])


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
    layout: Any  # and their static layout (see provi.loop.split_data)
    model: Any
    guide: Any
    params: Any
    consts: Any
    losses: np.ndarray
    args: tuple
    kwargs: dict
    objective: Any
    stop: StopInfo
    state: Any
    seed: int = 0
    correct: str | None = None  # the correction summary() applies by default ("psis" when guide="auto" advises it)
    auto: dict | None = None  # what guide="auto" tried, and the k-hat of the fit it kept

    # --- draws -------------------------------------------------------------------------------
    def _key(self, seed):
        return jax.random.PRNGKey(self.seed + 1 if seed is None else seed)

    def model_params(self) -> dict:
        """The model's own `numpyro.param` values, constrained."""
        from provi.guides.program import constrain_params

        return constrain_params(self.params["model"], self.model.info.params)

    @functools.cached_property
    def whole(self) -> tuple:
        """`(model, guide)` programs with every subsampled plate at its full range: results,
        predictions and diagnostics cover all the data, row i of a local latent for data point i."""
        plates = {**self.model.plates, **getattr(self.guide, "plates", {})}
        full = {name: jnp.arange(size) for name, (size, _) in plates.items()}
        return self.model.replaying(full), self.guide.replaying(full)

    def draws(self, n: int, seed: int | None = None) -> tuple[dict, np.ndarray]:
        """`n` draws of the latent sites (constrained) from the guide, and log q of each (over the
        whole data: subsampled plates at their full range)."""
        z, log_q = _draw(self.whole[1], self.params["guide"], self.consts, int(n), self._key(seed), self.data, self.layout)
        return z, log_q

    def sample(self, n: int = 1000, seed: int | None = None, correct: str | None = None) -> dict[str, np.ndarray]:
        """`n` posterior draws: {site: array (n, ...)} for latent and deterministic sites, constrained."""
        if correct is not None:
            if correct != "psis":
                raise ValueError(f"unknown correction {correct!r}: use 'psis' or None")
            from provi.diagnostics import psis_resample

            return psis_resample(self, n, seed)
        z, _ = self.draws(n, seed)
        return self._with_deterministic(z)

    def _with_deterministic(self, z: dict) -> dict:
        names = list(self.model.info.deterministic)
        out = {k: np.asarray(v) for k, v in z.items()}
        if names:
            from numpyro.infer import Predictive

            pred = Predictive(self.whole[0].model, posterior_samples=z, params=self.model_params(), return_sites=names)
            det = pred(jax.random.PRNGKey(0), *self.args, **self.kwargs)
            out.update({k: np.asarray(v) for k, v in det.items()})
        return out

    def predictive(self, n: int = 1000, *args, seed: int | None = None, **kwargs) -> dict[str, np.ndarray]:
        """Posterior predictive draws of every observed site (and deterministic sites) at `args`
        (the fitted data's arguments when none are given); observed values are set to None."""
        from numpyro.infer import Predictive

        args = args if args else self.args
        kwargs = {**self.kwargs, **kwargs}
        z, _ = self.draws(n, seed)
        sites = list(self.model.info.observed) + list(self.model.info.deterministic)
        pred = Predictive(self.whole[0].model, posterior_samples=z, params=self.model_params(), return_sites=sites)
        obs = set(self.model.info.observed)
        args = tuple(None if _is_obs_arg(a, self, obs) else a for a in args)
        kwargs = {k: (None if k in obs or _is_obs_arg(v, self, obs) else v) for k, v in kwargs.items()}
        out = pred(self._key(seed), *args, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

    # --- summaries ---------------------------------------------------------------------------
    def summary(self, n: int = 4000, seed: int | None = None, correct: str | None = "default"):
        """Per scalar quantity: mean, sd, 5%, 50% and 95% quantiles (a pandas DataFrame).

        `correct="psis"`: Pareto-smoothed importance-weighted moments and quantiles of max(n, 16000)
        guide draws (raises where k-hat >= 0.7); None: plain guide moments; "default": what the fit
        advises (`self.correct`: "psis" when guide="auto" found k-hat < 0.7)."""
        import pandas as pd

        correct = self.correct if correct == "default" else correct
        if correct == "psis":
            from provi.diagnostics import psis_summary

            return psis_summary(self, n, seed)
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
        and each draw's log importance weight), observed_data."""
        import arviz as az
        import xarray as xr

        z, log_q = self.draws(n, seed)
        draws = self._with_deterministic(z)
        log_w = np.asarray(self.log_weights(z, log_q))
        posterior = {k: v[None] for k, v in draws.items()}
        idata = az.from_dict(
            posterior=posterior,
            observed_data={k: np.asarray(v) for k, v in self.model.info.observed.items() if v is not None},
        )
        stats = xr.Dataset(
            {
                "loss": (("step",), np.asarray(self.losses)),
                "log_weight": (("chain", "draw"), log_w[None]),
            },
            coords={"step": np.arange(len(self.losses)), "chain": [0], "draw": np.arange(n)},
        )
        idata.add_groups(sample_stats=stats)
        return idata

    def log_weights(self, z: dict, log_q) -> jax.Array:
        """log p(x, z) - log q(z) for guide draws `z` with leading axis."""
        return _log_weights(self.whole[0], self.params["model"], z, log_q, self.data, self.layout)

    def diagnostics(self, n: int = 20_000, seed: int | None = None):
        """PSIS k-hat (from `n` guide draws: the k-hat estimate is unreliable with few draws), convergence
        and the estimators used, with verdicts in words. For a `guide="auto"` fit, the default `n`
        and `seed` judge the very draws its pipeline judged, so the k-hat here is the one in its notes
        (k-hat varies from one set of draws to the next, most near 0.7)."""
        from provi.auto import KHAT_DRAWS
        from provi.diagnostics import diagnose

        if seed is None and n == KHAT_DRAWS and self.auto is not None:
            seed = self.seed  # fit_auto's k-hat draws: res.draws(KHAT_DRAWS, seed)
        return diagnose(self, n, seed)

    # --- persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Save parameters and losses (npz) and metadata (JSON) in directory `path`."""
        from provi.persist import save

        save(self, path)

    def __repr__(self):
        return (
            f"FitResult(guide={_guide_name(self.guide)}, objective={self.objective!r}, steps={self.stop.steps}, "
            f"stop={self.stop.reason!r}, final loss={self.final_loss:.4g})"
        )

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10% of steps (at least one)."""
        if len(self.losses) == 0:
            return float("nan")
        k = max(1, len(self.losses) // 10)
        return float(np.mean(self.losses[-k:]))


def _guide_name(g) -> str:
    fam = getattr(g, "family", None)
    return repr(fam) if fam is not None else getattr(g.guide, "__name__", "guide")


def _is_obs_arg(a, res, obs) -> bool:
    """Whether argument `a` is the very array observed at some site (to be predicted, not conditioned on)."""
    for name in obs:
        v = res.model.info.observed[name]
        if v is None:
            continue
        if a is v:
            return True
        if hasattr(a, "shape") and hasattr(v, "shape") and a.shape == v.shape and a.dtype == v.dtype:
            try:
                if bool(np.array_equal(np.asarray(a), np.asarray(v))):
                    return True
            except Exception:
                pass
    return False


@functools.partial(jax.jit, static_argnums=(0, 5))
def _log_weights(model, model_params, z, log_q, data, layout):
    from provi.core.vocab import KeyStream
    from provi.loop import join_data

    args, kwargs = join_data(data, layout)
    return model.log_density(model_params, z, args, kwargs, KeyStream(jax.random.PRNGKey(0))) - log_q

"""posteriordb reference posteriors as ordinary NumPyro models.

Each model below is a NumPyro transcription, written for provi, of the Stan program in
``<root>/<name>/model.stan``; the data, reference summaries and reference draws are read from
``<root>/<name>/``. ``<root>`` (:func:`posteriordb_root`) is ``$PROVI_POSTERIORDB`` when set,
else the copy shipped with provi as package data, ``provi/examples/posteriordb_data/``
(posteriordb, BSD 3-Clause: see the README.md and LICENSE there, which also say what was copied).

Conventions: data are float32 ``jnp`` arrays passed positionally, observed data last (``None``
samples it); Stan's transformed data are computed in :func:`load`; sample sites carry Stan's
parameter names; parameters with no prior statement get a flat ``ImproperUniform`` prior.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
from typing import Callable

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

POSTERIORS: tuple[str, ...] = (
    "eight_schools-eight_schools_noncentered",
    "eight_schools-eight_schools_centered",
    "kidiq-kidscore_interaction",
    "earnings-logearn_interaction_z",
    "sblrc-blr",
    "kilpisjarvi_mod-kilpisjarvi",
    "low_dim_gauss_mix-low_dim_gauss_mix",
)


def _flat(name: str, batch_shape=(), event_shape=(), support=constraints.real):
    """Sample site ``name`` with a flat (improper) prior on ``support``."""
    return numpyro.sample(name, dist.ImproperUniform(support, batch_shape, event_shape))


# ----------------------------------------------------------------------------- models


def eight_schools_noncentered(J, sigma, y=None):
    """Non-centered eight schools; ``theta = mu + tau * theta_trans`` is a deterministic site."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_centered(J, sigma, y=None):
    """Centered eight schools: ``theta ~ Normal(mu, tau)`` (a funnel in ``(theta, tau)``)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def kidscore_interaction(mom_hs, mom_iq, inter, kid_score=None):
    """Linear regression of kid_score on mom_hs, mom_iq and their interaction; flat beta."""
    beta = _flat("beta", event_shape=(4,))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mean = beta[0] + beta[1] * mom_hs + beta[2] * mom_iq + beta[3] * inter
    with numpyro.plate("N", mom_iq.shape[0]):
        numpyro.sample("kid_score", dist.Normal(mean, sigma), obs=kid_score)


def logearn_interaction_z(z_height, male, inter, log_earn=None):
    """Regression of log earnings on standardised height, sex and interaction; flat priors."""
    beta = _flat("beta", event_shape=(4,))
    sigma = _flat("sigma", support=constraints.positive)
    mean = beta[0] + beta[1] * z_height + beta[2] * male + beta[3] * inter
    with numpyro.plate("N", z_height.shape[0]):
        numpyro.sample("log_earn", dist.Normal(mean, sigma), obs=log_earn)


def blr(X, y=None):
    """Bayesian linear regression ``y ~ Normal(X @ beta, sigma)``, Normal(0, 10) priors."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


def kilpisjarvi(x, pmualpha, psalpha, pmubeta, psbeta, y=None):
    """Gaussian linear model ``y ~ Normal(alpha + beta * x, sigma)``; flat sigma."""
    alpha = numpyro.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = numpyro.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = _flat("sigma", support=constraints.positive)
    with numpyro.plate("N", x.shape[0]):
        numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def low_dim_gauss_mix(N, y=None):
    """Two-component normal mixture, weight ``theta`` on component 1, ordered means ``mu``."""
    mu = _flat("mu", event_shape=(2,), support=constraints.ordered_vector)
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum())
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    mix = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.stack([theta, 1.0 - theta])), dist.Normal(mu, sigma)
    )
    with numpyro.plate("N", N):
        numpyro.sample("y", mix, obs=y)


# ----------------------------------------------------------------------------- data


def _f32(v):
    return jnp.asarray(np.asarray(v, dtype=np.float32))


def _eight_schools_args(d):
    return int(d["J"]), _f32(d["sigma"]), _f32(d["y"])


def _kidiq_args(d):
    mom_hs, mom_iq = _f32(d["mom_hs"]), _f32(d["mom_iq"])
    return mom_hs, mom_iq, mom_hs * mom_iq, _f32(d["kid_score"])


def _earnings_args(d):
    height, male = _f32(d["height"]), _f32(d["male"])
    z_height = (height - height.mean()) / height.std(ddof=1)  # Stan's sd() divides by N - 1
    return z_height, male, z_height * male, jnp.log(_f32(d["earn"]))


def _blr_args(d):
    return _f32(d["X"]), _f32(d["y"])


def _kilpisjarvi_args(d):
    keys = ("x", "pmualpha", "psalpha", "pmubeta", "psbeta", "y")
    return tuple(_f32(d[k]) for k in keys)


def _gauss_mix_args(d):
    return int(d["N"]), _f32(d["y"])


def _theta_noncentered(s):
    mu, tau = np.asarray(s["mu"])[..., None], np.asarray(s["tau"])[..., None]
    return mu + tau * np.asarray(s["theta_trans"])


# name -> (model, args from data.json, reported sites in reference order, derived sites)
_SPECS = {
    POSTERIORS[0]: (eight_schools_noncentered, _eight_schools_args, ("mu", "tau", "theta"),
                    {"theta": _theta_noncentered}),
    POSTERIORS[1]: (eight_schools_centered, _eight_schools_args, ("mu", "tau", "theta"), {}),
    POSTERIORS[2]: (kidscore_interaction, _kidiq_args, ("beta", "sigma"), {}),
    POSTERIORS[3]: (logearn_interaction_z, _earnings_args, ("beta", "sigma"), {}),
    POSTERIORS[4]: (blr, _blr_args, ("beta", "sigma"), {}),
    POSTERIORS[5]: (kilpisjarvi, _kilpisjarvi_args, ("alpha", "beta", "sigma"), {}),
    POSTERIORS[6]: (low_dim_gauss_mix, _gauss_mix_args, ("mu", "sigma", "theta"), {}),
}

_STAT_NAMES = {"q05": "q5", "5%": "q5", "50%": "q50", "median": "q50", "95%": "q95"}


PACKAGED_ROOT = pathlib.Path(__file__).resolve().parent / "posteriordb_data"


def posteriordb_root() -> pathlib.Path:
    """The posteriordb folder: ``$PROVI_POSTERIORDB`` when set (it must be a directory), else
    :data:`PACKAGED_ROOT`, the copy shipped with provi."""
    env = os.environ.get("PROVI_POSTERIORDB")
    if env:
        root = pathlib.Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"PROVI_POSTERIORDB={env!r} is not a directory")
        return root
    return PACKAGED_ROOT


def _flatten(site: str, a) -> dict[str, np.ndarray]:
    """``{site: (S, *shape)}`` -> Stan's flat 1-based names, e.g. ``theta[3]``: ``(S,)``."""
    a = np.asarray(a)
    if a.ndim == 1:
        return {site: a}
    return {
        f"{site}[{','.join(str(i + 1) for i in idx)}]": a[(slice(None), *idx)]
        for idx in np.ndindex(a.shape[1:])
    }


@dataclasses.dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior: ``model(*args, **kwargs)`` is its NumPyro model."""

    name: str
    model: Callable
    args: tuple
    kwargs: dict

    @property
    def path(self) -> pathlib.Path:
        return posteriordb_root() / self.name

    def quantities(self, samples: dict) -> dict[str, np.ndarray]:
        """Constrained samples ``{site: (S, ...)}`` -> every reference quantity, ``{flat: (S,)}``.

        Derived sites missing from ``samples`` (non-centered ``theta``) are computed."""
        _, _, sites, derived = _SPECS[self.name]
        out = {}
        for site in sites:
            value = samples[site] if site in samples else derived[site](samples)
            out.update(_flatten(site, value))
        return out

    def reference_summary(self) -> dict[str, dict]:
        """``{flat: {'mean', 'sd', 'q5', 'q50', 'q95'}}`` from reference_summary.json."""
        stats = json.loads((self.path / "reference_summary.json").read_text())["stats"]
        return {
            q: {_STAT_NAMES.get(k, k): float(v) for k, v in s.items()} for q, s in stats.items()
        }

    def reference_draws(self) -> dict[str, np.ndarray]:
        """``{flat: (10000,)}`` from draws.json.gz, chains concatenated in file order.

        Raises FileNotFoundError, saying so, where the folder has no draws (a copy that left them
        out; the packaged copy has every posterior's draws)."""
        path = self.path / "draws.json.gz"
        if not path.is_file():
            raise FileNotFoundError(
                f"reference draws not found: {path} does not exist in this posteriordb copy; "
                f"set PROVI_POSTERIORDB to a full posteriordb copy with {self.name}/draws.json.gz"
            )
        with gzip.open(path, "rt") as f:
            chains = json.load(f)
        return {q: np.concatenate([np.asarray(c[q], dtype=np.float64) for c in chains])
                for q in chains[0]}


def load(name: str) -> Posterior:
    """The :class:`Posterior` ``name`` (one of :data:`POSTERIORS`), data read and transformed."""
    if name not in _SPECS:
        raise KeyError(f"unknown posterior {name!r}; choose from {POSTERIORS}")
    model, make_args, _, _ = _SPECS[name]
    data = json.loads((posteriordb_root() / name / "data.json").read_text())
    return Posterior(name, model, make_args(data), {})

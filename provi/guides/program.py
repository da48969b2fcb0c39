"""Programs that objectives run: the model (log joint) and guides (families or NumPyro guides).

A guide program has `init`, `sim` (draws and log q, vectorised over particles) and `log_density`.
`FamilyGuide` places a `Family` in the model's unconstrained space behind an affine
preconditioner `u = shift + P v`; `NumPyroGuide` runs a user's NumPyro guide function.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import biject_to, constraints
from numpyro.infer.util import log_density as numpyro_log_density

from provi.core.batching import vectorise, vmap_or_call
from provi.core.model import ModelInfo, base_distribution, trace_model
from provi.core.space import LatentSpace
from provi.core.subsample import ReplayPlates, subsampled_plates
from provi.core.vocab import require_sites
from provi.errors import ModelError
from provi.guides.families import Family

__all__ = ["ModelProgram", "FamilyGuide", "NumPyroGuide", "batch_ndim", "vectorise"]


def batch_ndim(values: dict, shapes: dict) -> int:
    """How many leading particle axes `values` carries beyond each site's own shape."""
    name = next(iter(values))
    return jnp.ndim(values[name]) - len(shapes[name])


def constrain_params(unconstrained: dict, spec: dict) -> dict:
    """Map `numpyro.param` values from their unconstrained storage to their constraints (a param's
    value may be a pytree, e.g. a neural network's weights: each leaf is mapped)."""
    return {k: jax.tree.map(biject_to(spec[k][1]), v) for k, v in unconstrained.items()}


def unconstrain_params(spec: dict) -> dict:
    return {k: jax.tree.map(lambda x, c=c: biject_to(c).inv(jnp.asarray(x)), v) for k, (v, c) in spec.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class ModelProgram:
    """The model's log joint density, with its `numpyro.param` sites as learnable parameters."""

    model: Callable
    info: ModelInfo

    @property
    def shapes(self) -> dict:
        return {s.name: s.shape for s in self.info.latents}

    @property
    def plates(self) -> dict:
        """Subsampled plates: name -> (size, subsample size)."""
        return self.info.plates

    def replaying(self, indices: dict) -> "ModelProgram":
        """This program with its subsampled plates given `indices` (see provi.core.subsample)."""
        return dataclasses.replace(self, model=ReplayPlates(self.model, indices)) if indices else self

    def init_params(self) -> dict:
        return unconstrain_params(self.info.params)

    def log_density(self, params, values, args, kwargs, keys):
        require_sites(values, self.info.latent_names, "the model's density")
        nb = batch_ndim(values, self.shapes)
        fixed = constrain_params(params, self.info.params)
        key = keys()

        def one(v):
            seeded = handlers.seed(self.model, key)
            return numpyro_log_density(seeded, args, kwargs, {**fixed, **v})[0]

        return vectorise(one, nb)(values)


@dataclasses.dataclass(frozen=True, eq=False)
class FamilyGuide:
    """A family over the preconditioned unconstrained latent space `u = shift + P v`.

    `consts` holds `shift` (D,), `P` ((D,) diagonal or (D, D) lower triangular) and `log_det_P`;
    they are fixed during optimisation.
    """

    space: LatentSpace
    family: Family

    @property
    def sites(self) -> tuple[str, ...]:
        return self.space.names

    plates = {}  # a family has no plates

    def replaying(self, indices: dict) -> "FamilyGuide":
        return self

    def consts(self, shift, P) -> dict:
        """The preconditioner's constants, from host arrays (no device computation)."""
        shift, P = np.asarray(shift, np.float64), np.asarray(P, np.float64)
        logdet = np.sum(np.log(np.abs(P if P.ndim == 1 else np.diag(P))))
        dtype = jnp.result_type(float)
        return {"shift": np.asarray(shift, dtype), "P": np.asarray(P, dtype), "log_det_P": np.asarray(logdet, dtype)}

    def init_params(self, key, scale=None) -> dict:
        d = self.space.dim
        scale = jnp.ones((d,)) if scale is None else scale
        return self.family.init(key, d, jnp.zeros((d,)), scale)

    def to_u(self, consts, v):
        P = consts["P"]
        return consts["shift"] + (v * P if P.ndim == 1 else v @ P.T)

    def to_v(self, consts, u):
        P = consts["P"]
        x = u - consts["shift"]
        if P.ndim == 1:
            return x / P
        flat = x.reshape(-1, x.shape[-1])
        return jax.scipy.linalg.solve_triangular(P, flat.T, lower=True).T.reshape(x.shape)

    def sim(self, params, consts, key, n, args, kwargs, ledger):
        v, log_qv = self.family.sample(params, key, n)
        z, ldj = vmap_or_call(self.space.constrain)(self.to_u(consts, v))
        if self.family.is_point:
            return z, log_qv
        return z, log_qv - consts["log_det_P"] - ldj

    def log_density(self, params, consts, values, args, kwargs):
        require_sites(values, self.sites, "the guide's density")
        nb = batch_ndim(values, {s.name: s.shape for s in self.space.sites})
        u = vectorise(self.space.unconstrain, nb)(values)
        if self.family.is_point:
            return jnp.zeros(u.shape[:-1], u.dtype)
        _, ldj = vectorise(self.space.constrain, nb)(u)
        return self.family.log_prob(params, self.to_v(consts, u)) - consts["log_det_P"] - ldj

    def moments(self, params, consts):
        """Mean and covariance of the unconstrained vector u."""
        m, c = self.family.moments(params)
        P = consts["P"]
        if P.ndim == 1:
            return consts["shift"] + P * m, P[:, None] * c * P[None, :]
        return consts["shift"] + P @ m, P @ c @ P.T


@dataclasses.dataclass(frozen=True, eq=False)
class NumPyroGuide:
    """A user's NumPyro guide function: `numpyro.param` sites are its parameters."""

    guide: Callable
    info: ModelInfo  # the model's
    params_spec: dict  # name -> (initial value, constraint)
    sites: tuple[str, ...]
    shapes: dict
    estimators: dict  # site -> estimator
    plates: dict = dataclasses.field(default_factory=dict)  # subsampled plates: name -> (size, subsample size)
    site_fns: dict = dataclasses.field(default_factory=dict)  # site -> its distribution as traced (sizes estimator state)

    def replaying(self, indices: dict) -> "NumPyroGuide":
        """This guide with its subsampled plates given `indices` (see provi.core.subsample)."""
        return dataclasses.replace(self, guide=ReplayPlates(self.guide, indices)) if indices else self

    @classmethod
    def build(cls, guide, model_info: ModelInfo, args, kwargs, key, estimators) -> "NumPyroGuide":
        tr = trace_model(guide, args, kwargs, key)
        spec, sites, shapes = {}, [], {}
        for name, site in tr.items():
            if site["type"] == "param":
                spec[name] = (site["value"], site["kwargs"].get("constraint", constraints.real))
            elif site["type"] == "sample" and not site["is_observed"]:
                sites.append(name)
                shapes[name] = tuple(jnp.shape(site["value"]))
                aux = site["infer"].get("is_auxiliary", False)
                if name not in model_info.latent_names and not aux:
                    raise ModelError(
                        f"the guide samples site {name!r}, which is not a latent site of the model "
                        f"(the model's latent sites are {list(model_info.latent_names)}); mark auxiliary "
                        "guide variables with infer={'is_auxiliary': True}"
                    )
        missing = [n for n in model_info.latent_names if n not in sites]
        if missing:
            raise ModelError(f"the guide has no sample statement for the model's latent site(s) {missing}")
        unknown = sorted(set(estimators or {}) - set(sites))
        if unknown:
            raise ModelError(f"estimators given for unknown site(s) {unknown}; the guide's sample sites are {sites}")
        from provi.estimators import resolve  # estimators build on programs, not the reverse

        chosen = {name: resolve(name, tr[name], estimators) for name in sites}
        fns = {name: tr[name]["fn"] for name in sites}
        return cls(guide, model_info, spec, tuple(sites), shapes, chosen, subsampled_plates(tr), fns)

    def init_params(self, key=None, scale=None) -> dict:
        return unconstrain_params(self.params_spec)

    def consts(self, *_):
        return {}

    def _trace(self, params, key, args, kwargs):
        fn = handlers.substitute(handlers.seed(self.guide, key), data=constrain_params(params, self.params_spec))
        return handlers.trace(fn).get_trace(*args, **kwargs)

    branchable = True  # sim takes a `branching` state (provi.estimators.branch)

    def sim(self, params, consts, key, n, args, kwargs, ledger, branching=None):
        """Draws of every latent site, each rewritten by its estimator (`provi.estimators.hook`)."""
        from provi.estimators.hook import draw_sites

        return draw_sites(
            lambda k: self._trace(params, k, args, kwargs), self.sites, self.estimators, key, n, ledger, branching
        )

    def log_density(self, params, consts, values, args, kwargs):
        require_sites(values, self.sites, "the guide's density")
        nb = batch_ndim(values, self.shapes)
        fixed = constrain_params(params, self.params_spec)

        def one(v):
            seeded = handlers.seed(self.guide, jax.random.PRNGKey(0))
            return numpyro_log_density(seeded, args, kwargs, {**fixed, **v})[0]

        return vectorise(one, nb)(values)

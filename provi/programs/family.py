"""`FamilyGuide`: a family placed in a model's unconstrained latent space, behind a preconditioner."""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.batching import batch_ndim, vectorise, vmap_or_call
from provi.core.program import AbstractGuide, require_sites
from provi.core.space import LatentSpace
from provi.guides import Family, Flow, FullRank, GaussianMixture, Laplace, ModeMixture, Particles, StudentT

# families whose preconditioner is a dense (lower-triangular) matrix; the others take a diagonal one
DENSE_WHITENING = (FullRank, Laplace, Flow, GaussianMixture, ModeMixture, Particles, StudentT)  # flows start at the Laplace approximation

__all__ = ["FamilyGuide"]


@final
class FamilyGuide(AbstractGuide):
    """A family over the preconditioned unconstrained latent space `u = shift + P v`.

    `consts` holds `shift` (D,), `P` ((D,) diagonal or (D, D) lower triangular) and `log_det_P`;
    they are fixed during optimisation. All its sites are drawn pathwise; `local` names the sites
    whose moments the model uses instead of their draws (`LocalReparam`: dense layers' pre-activations,
    a sparse GP's inducing values).
    """

    space: LatentSpace
    family: Family
    local: tuple = ()

    @property
    def sites(self) -> tuple:
        return self.space.names

    @property
    def latents(self) -> tuple:
        return self.space.names

    @property
    def shapes(self) -> dict:
        return {s.name: s.shape for s in self.space.sites}

    @property
    def plates(self) -> dict:
        return {}  # a family covers a fixed set of latent values: no plates

    @property
    def estimators(self) -> dict:
        return {}

    @property
    def site_fns(self) -> dict:
        return {}

    @property
    def is_point(self) -> bool:
        return self.family.is_point

    @property
    def optimise(self) -> bool:
        return self.family.optimise

    @property
    def has_density(self) -> bool:
        return self.family.has_density

    @property
    def name(self) -> str:
        return repr(self.family)

    def replaying(self, indices: dict) -> "FamilyGuide":
        return self

    def numpyro_fn(self, params):
        return None

    def spec(self) -> dict:
        fields = {k: v for k, v in vars(self.family).items() if isinstance(v, (int, float, str, bool))}
        return {"kind": "family", "name": type(self.family).__name__, "fields": fields}

    def consts(self, shift, P) -> dict:
        """The preconditioner's constants, from host arrays (no device computation)."""
        shift, P = np.asarray(shift, np.float64), np.asarray(P, np.float64)
        logdet = np.sum(np.log(np.abs(P if P.ndim == 1 else np.diag(P))))
        dtype = jnp.result_type(float)
        return {"shift": np.asarray(shift, dtype), "P": np.asarray(P, dtype), "log_det_P": np.asarray(logdet, dtype)}

    def identity_whitening(self) -> np.ndarray:
        """The preconditioner P = I in this family's form: a matrix for dense whitening, else a vector."""
        d = self.space.dim
        return np.eye(d) if isinstance(self.family, DENSE_WHITENING) else np.ones((d,))

    def identity_consts(self, shift) -> dict:
        """The constants of P = I at `shift` (traceable: for starts computed on the device)."""
        dtype = jnp.result_type(float)
        return {"shift": jnp.asarray(shift, dtype), "P": jnp.asarray(self.identity_whitening(), dtype), "log_det_P": jnp.zeros((), dtype)}

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

    def positions(self, params, consts):
        x = self.family.positions(params)
        P = consts["P"]
        return x, jnp.diag(P**2) if P.ndim == 1 else P.T @ P

    def components(self, params, consts):
        return self.family.component_params(params)

    def gaussian(self, params, consts):
        return self.family.gaussian_params(params)

    def local_moments(self, params, consts):
        """{site: (loc, scale)} of the `local` sites in their own shapes: each coordinate's scale
        for a mean-field family; for a full-rank one (a single local site, the model's only latent
        site: checked at setup), a (D, D) factor of its covariance."""
        if not self.local:
            return {}
        loc, scale = self.family.gaussian_params(params)
        mean, P = self.space.unflatten(self.to_u(consts, loc)), consts["P"]  # real sites: unconstrained shape = shape
        if scale.ndim == 1:  # mean-field: P is diagonal too
            scale = self.space.unflatten(jnp.abs(P) * scale)
            return {s: (mean[s], scale[s]) for s in self.local}
        (site,) = self.local
        return {site: (mean[site], P @ scale if P.ndim == 2 else P[:, None] * scale)}

    def place(self, consts, x):
        z, ldj = vectorise(self.space.constrain, x.ndim - 1)(self.to_u(consts, x))
        return z, ldj + consts["log_det_P"]

    def sim(self, params, consts, key, n, args, kwargs, ledger, branching=None):
        v, log_qv = self.family.sample(params, key, n)
        z, ldj = vmap_or_call(self.space.constrain)(self.to_u(consts, v))
        if self.family.is_point:
            return z, log_qv
        return z, log_qv - consts["log_det_P"] - ldj

    def log_density(self, params, consts, values, args, kwargs):
        require_sites(values, self.sites, "the guide's density")
        nb = batch_ndim(values, self.shapes)
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

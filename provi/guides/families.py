"""Gaussian variational families on a flat vector: Delta, MeanField, FullRank, LowRank.

A family is a frozen equinox module that knows how to make its parameters, draw reparameterized
samples with their log density, evaluate that density, and report its moments. Families know
nothing about models: `provi.guides.program` places them in a model's unconstrained space.

Scales are parameterised by their logarithms (`log_scale`, and the diagonal of `scale_tril`), as
in Stan's ADVI: the entropy is linear in them, and an optimiser's step changes a scale by a ratio
whatever its size.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from provi.core import rand
from provi.errors import ObjectiveError

__all__ = ["Family", "Delta", "MeanField", "FullRank", "LowRank", "Laplace", "tril_factor"]

_LOG_2PI = math.log(2.0 * math.pi)


def _positive(raw):
    return jax.nn.softplus(raw)


def _unpositive(x):
    return x + jnp.log(-jnp.expm1(-x))  # inverse of softplus


def _std_normal_logpdf(eps):
    return -0.5 * jnp.sum(eps**2, axis=-1) - 0.5 * eps.shape[-1] * _LOG_2PI


class Family(eqx.Module):
    """A family of distributions on R^D with reparameterized sampling."""

    is_point: eqx.AbstractClassVar[bool]
    optimise: ClassVar[bool] = True
    has_density: ClassVar[bool] = True  # `provi.guides.Particles` has none

    def positions(self, params: dict) -> jax.Array:
        """The particles (N, D) of a particle family; other families have none."""
        raise ObjectiveError(f"{type(self).__name__} is not a set of particles: use guide=provi.guides.Particles(n)")

    def component_params(self, params: dict) -> tuple[jax.Array, jax.Array]:
        """`(loc, log_scale)` (K, D) of a `MeanFieldMixture`'s components; other families have none."""
        raise ObjectiveError(f"{type(self).__name__} is not a mixture of mean-field Gaussians: use "
                             "guide=provi.guides.MeanFieldMixture(k)")

    def gaussian_params(self, params: dict) -> tuple[jax.Array, jax.Array]:
        """`(loc, scale)` of a Gaussian with a triangular factor: `scale` is the scales (D,) of
        `MeanField`, the Cholesky factor (D, D) of `FullRank`; other families have none."""
        raise ObjectiveError(f"{type(self).__name__} is not a Gaussian with a triangular scale: use "
                             "guide='fullrank' or guide='meanfield'")

    @abc.abstractmethod
    def init(self, key, dim: int, loc: jax.Array, scale: jax.Array) -> dict:
        """Parameters of the member with mean `loc` (D,) and, where the family can, marginal scales `scale` (D,)."""

    @abc.abstractmethod
    def sample(self, params: dict, key, n: int) -> tuple[jax.Array, jax.Array]:
        """`n` reparameterized draws (n, D) and their log densities (n,)."""

    @abc.abstractmethod
    def log_prob(self, params: dict, v: jax.Array) -> jax.Array:
        """Log density at `v` (..., D)."""

    @abc.abstractmethod
    def moments(self, params: dict) -> tuple[jax.Array, jax.Array]:
        """Mean (D,) and covariance (D, D)."""


class Delta(Family):
    """A point mass: fitting it is MAP estimation (in the constrained space, as NumPyro's AutoDelta)."""

    is_point: ClassVar[bool] = True

    def init(self, key, dim, loc, scale):
        return {"loc": loc}

    def sample(self, params, key, n):
        loc = params["loc"]
        return jnp.broadcast_to(loc, (n,) + loc.shape), jnp.zeros((n,), loc.dtype)

    def log_prob(self, params, v):
        return jnp.zeros(v.shape[:-1], v.dtype)

    def moments(self, params):
        loc = params["loc"]
        return loc, jnp.zeros((loc.shape[0], loc.shape[0]), loc.dtype)


class MeanField(Family):
    """Independent normals: N(loc, diag(exp(log_scale)^2))."""

    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        return {"loc": loc, "log_scale": jnp.log(scale)}

    def sample(self, params, key, n):
        loc, log_scale = params["loc"], params["log_scale"]
        eps = rand.normal(key, (n,) + loc.shape, loc.dtype)
        return loc + jnp.exp(log_scale) * eps, _std_normal_logpdf(eps) - jnp.sum(log_scale)

    def log_prob(self, params, v):
        loc, log_scale = params["loc"], params["log_scale"]
        return _std_normal_logpdf((v - loc) * jnp.exp(-log_scale)) - jnp.sum(log_scale)

    def moments(self, params):
        return params["loc"], jnp.diag(jnp.exp(2 * params["log_scale"]))

    def marginals(self, params):
        """`(loc, scale)`, each (D,): every coordinate's normal."""
        return params["loc"], jnp.exp(params["log_scale"])

    def gaussian_params(self, params):
        return self.marginals(params)


def tril_factor(raw):
    """The Cholesky factor stored as `scale_tril`: its strict lower triangle is `raw`'s and its
    diagonal is exp of `raw`'s."""
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))


def _tril_logdet(raw):
    """log |det L| of `tril_factor(raw)`."""
    return jnp.sum(jnp.diagonal(raw, axis1=-2, axis2=-1), -1)


class _TrilNormal(Family):
    """A multivariate normal with a Cholesky factor: N(loc, L L^T); `scale_tril` holds L's strict
    lower triangle and the logarithms of its diagonal."""

    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        return {"loc": loc, "scale_tril": jnp.diag(jnp.log(scale))}

    def sample(self, params, key, n):
        loc, raw = params["loc"], params["scale_tril"]
        eps = rand.normal(key, (n,) + loc.shape, loc.dtype)
        return loc + eps @ tril_factor(raw).T, _std_normal_logpdf(eps) - _tril_logdet(raw)

    def log_prob(self, params, v):
        loc, raw = params["loc"], params["scale_tril"]
        eps = jax.scipy.linalg.solve_triangular(tril_factor(raw), (v - loc).reshape(-1, loc.shape[0]).T, lower=True).T
        return (_std_normal_logpdf(eps) - _tril_logdet(raw)).reshape(v.shape[:-1])

    def moments(self, params):
        L = tril_factor(params["scale_tril"])
        return params["loc"], L @ L.T


class FullRank(_TrilNormal):
    """A multivariate normal with a Cholesky factor: N(loc, L L^T), fitted by optimisation."""

    def gaussian_params(self, params):
        return params["loc"], tril_factor(params["scale_tril"])


class Laplace(_TrilNormal):
    """The Laplace approximation: a normal at the mode with the inverse negative Hessian as its
    covariance (in the unconstrained space); fitting it runs no optimisation."""

    optimise: ClassVar[bool] = False


class LowRank(Family):
    """N(loc, W W^T + diag(d^2)) with W of shape (D, rank) and d = exp(log_scale)."""

    rank: int = 5
    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        r = min(self.rank, dim)
        w = 0.01 * rand.normal(key, (dim, r), loc.dtype)
        return {"loc": loc, "cov_factor": w, "log_scale": jnp.log(scale)}

    def sample(self, params, key, n):
        loc, w, d = params["loc"], params["cov_factor"], jnp.exp(params["log_scale"])
        k1, k2 = jax.random.split(key)
        e1 = rand.normal(k1, (n, w.shape[1]), loc.dtype)
        e2 = rand.normal(k2, (n,) + loc.shape, loc.dtype)
        v = loc + e1 @ w.T + d * e2
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        loc, w, d = params["loc"], params["cov_factor"], jnp.exp(params["log_scale"])
        # Woodbury: Sigma = D2 + W W^T, with capacitance C = I + W^T D2^-1 W.
        x = v - loc
        wd = w / (d**2)[:, None]
        cap = jnp.eye(w.shape[1], dtype=w.dtype) + w.T @ wd
        cl = jnp.linalg.cholesky(cap)
        y = jax.scipy.linalg.solve_triangular(cl, (x @ wd).reshape(-1, w.shape[1]).T, lower=True).T
        maha = jnp.sum(x**2 / d**2, -1) - jnp.sum(y**2, -1).reshape(x.shape[:-1])
        logdet = 2 * jnp.sum(params["log_scale"]) + 2 * jnp.sum(jnp.log(jnp.diag(cl)))
        return -0.5 * (maha + logdet + loc.shape[0] * _LOG_2PI)

    def moments(self, params):
        w = params["cov_factor"]
        return params["loc"], w @ w.T + jnp.diag(jnp.exp(2 * params["log_scale"]))

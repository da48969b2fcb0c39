"""A full-rank multivariate Student-t: heavier tails than a Gaussian where the posterior has them.

`StudentT(df=None)`: `v = loc + L eps sqrt(df / c)`, `eps ~ N(0, I)`, `c ~ chi2(df)`; the degrees
of freedom are learned (`df=None`, started at `DF_START`, a near-Gaussian) or held at a given
value. Draws are reparameterized in every parameter, `df` included: JAX differentiates its gamma
sampler implicitly (Figurnov et al. 2018). `guide="auto"` tries it where a Gaussian's k-hat says
the tails are too light.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from provi.core import rand
from provi.guides.families import Family, _tril_logdet, tril_factor

__all__ = ["StudentT"]

DF_START = 30.0  # a learned df starts here: close to the Gaussian it usually starts from


class StudentT(Family):
    """The multivariate Student-t with location `loc`, scale `L L^T` and `df` degrees of freedom
    (learned where `df` is None); its covariance is `df / (df - 2) L L^T` for `df > 2`.

    >>> import jax, jax.numpy as jnp
    >>> t = StudentT(df=3.0)
    >>> p = t.init(jax.random.PRNGKey(0), 2, jnp.zeros(2), jnp.ones(2))
    >>> v, log_q = t.sample(p, jax.random.PRNGKey(1), 4)
    >>> bool(jnp.allclose(log_q, t.log_prob(p, v), atol=1e-5))
    True
    """

    df: float | None = None
    is_point: ClassVar[bool] = False

    def init(self, key, dim, loc, scale):
        params = {"loc": loc, "scale_tril": jnp.diag(jnp.log(scale))}
        if self.df is None:
            params["log_df"] = jnp.asarray(math.log(DF_START), loc.dtype)
        return params

    def degrees(self, params) -> jax.Array:
        return jnp.exp(params["log_df"]) if self.df is None else jnp.asarray(self.df, params["loc"].dtype)

    def sample(self, params, key, n):
        loc, df = params["loc"], self.degrees(params)
        k1, k2 = jax.random.split(key)
        eps = rand.normal(k1, (n,) + loc.shape, loc.dtype)
        chi2 = 2.0 * jax.random.gamma(k2, jnp.broadcast_to(0.5 * df, (n,)), dtype=loc.dtype)
        v = loc + (eps @ tril_factor(params["scale_tril"]).T) * jnp.sqrt(df / chi2)[:, None]
        return v, self.log_prob(params, v)

    def log_prob(self, params, v):
        loc, raw, df = params["loc"], params["scale_tril"], self.degrees(params)
        d = loc.shape[0]
        eps = jax.scipy.linalg.solve_triangular(tril_factor(raw), (v - loc).reshape(-1, d).T, lower=True).T
        maha = jnp.sum(eps**2, -1)
        norm = gammaln(0.5 * (df + d)) - gammaln(0.5 * df) - 0.5 * d * jnp.log(df * math.pi) - _tril_logdet(raw)
        return (norm - 0.5 * (df + d) * jnp.log1p(maha / df)).reshape(v.shape[:-1])

    def moments(self, params):
        L = tril_factor(params["scale_tril"])
        df = self.degrees(params)
        return params["loc"], L @ L.T * jnp.where(df > 2, df / jnp.maximum(df - 2, 1e-12), jnp.inf)

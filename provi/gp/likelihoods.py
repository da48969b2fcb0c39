"""Expected log-likelihoods E_{N(f; f_loc, f_var)}[log p(y | f)] per data point, and the model
factor that adds them to a NumPyro model.

Given u, f(x_i) ~ N(f_loc_i, f_var_i) (`SVGP.conditional`); the SVGP bound integrates each
observation's log-likelihood over that Gaussian:

- `Gaussian(scale)`: exact, E[log N(y | f, s^2)] = log N(y | f_loc, s^2) - f_var / (2 s^2);
- any other likelihood, given as a function f -> NumPyro distribution over one observation
  (`lambda f: dist.Bernoulli(logits=f)`, `lambda f: dist.Poisson(jnp.exp(f))`, ...): Gauss-Hermite
  quadrature with `num_points` nodes (numpy's `hermegauss`, computed at first use and cached),
  E[g(f)] ~ sum_k w_k g(f_loc + sqrt(f_var) x_k) / sqrt(2 pi), exact when g is a polynomial of
  degree below 2 num_points (so exact for a Normal likelihood too).
- `BernoulliProbit`: the probit classifier's likelihood, p(y = 1 | f) = Phi(f), as such a function
  (`expected_log_likelihood("y", BernoulliProbit, y, f_loc, f_var)`): one `log_ndtr` per node,
  log p(y | f) = log Phi((2y - 1) f), exact in the tails where Phi(f) underflows.

>>> import jax.numpy as jnp
>>> import numpyro.distributions as dist
>>> y, loc, var = jnp.array([0.5]), jnp.array([0.0]), jnp.array([0.3])
>>> exact = gaussian_expectation(Gaussian(1.0), y, loc, var)
>>> quad = gauss_hermite(lambda f: dist.Normal(f, 1.0), y, loc, var)
>>> bool(jnp.allclose(exact, quad, rtol=1e-5))
True
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr, ndtr
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["Gaussian", "BernoulliProbit", "expected_log_likelihood", "expected_terms", "gaussian_expectation", "gauss_hermite", "hermite_rule", "DEFAULT_POINTS"]

DEFAULT_POINTS = 20  # Gauss-Hermite nodes: exact for polynomials of degree < 40
_LOG_2PI = math.log(2.0 * math.pi)


class Gaussian(eqx.Module):
    """The Gaussian likelihood y ~ N(f, scale^2), integrated over f exactly; `scale` (a scalar
    or one per data point) may be a site's value."""

    scale: jax.Array

    def __init__(self, scale):
        self.scale = jnp.asarray(scale)


class BernoulliProbit(dist.Distribution):
    """y in {0, 1} with p(y = 1 | f) = Phi(f), the standard normal CDF (the probit link, GPJax's
    `Bernoulli`). `log_prob(y) = log_ndtr((2y - 1) f)`: one call, finite for any finite f.

    >>> import jax.numpy as jnp
    >>> d = BernoulliProbit(jnp.array([0.0, -40.0]))
    >>> lp = d.log_prob(jnp.array([1.0, 1.0]))
    >>> round(float(lp[0]), 2), round(float(lp[1]), 2)
    (-0.69, -804.61)
    """

    arg_constraints = {"f": dist.constraints.real}
    support = dist.constraints.boolean
    has_enumerate_support = True

    def __init__(self, f, *, validate_args=None):
        self.f = jnp.asarray(f)
        super().__init__(batch_shape=jnp.shape(self.f), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        u = jax.random.uniform(key, tuple(sample_shape) + self.batch_shape, dtype=jnp.result_type(self.f, float))
        return (u < ndtr(self.f)).astype(jnp.int32)

    def log_prob(self, value):
        return log_ndtr(jnp.where(jnp.asarray(value) > 0, self.f, -self.f))

    def enumerate_support(self, expand=True):
        values = jnp.arange(2).reshape((2,) + (1,) * len(self.batch_shape))
        return jnp.broadcast_to(values, (2,) + self.batch_shape) if expand else values

    @property
    def mean(self):
        return ndtr(self.f)

    @property
    def variance(self):
        p = ndtr(self.f)
        return p * (1.0 - p)


@functools.lru_cache(maxsize=None)
def hermite_rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x_k and weights w_k / sqrt(2 pi) of the probabilists' Gauss-Hermite rule (weights
    summing to 1): E_{N(0,1)}[g] ~ sum_k weight_k g(x_k). Cached per `num_points`."""
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    nodes, weights = hermegauss(num_points)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def gaussian_expectation(likelihood: Gaussian, y, f_loc, f_var) -> jax.Array:
    """E[log N(y | f, s^2)] under f ~ N(f_loc, f_var), elementwise (exact)."""
    var = likelihood.scale**2
    return -0.5 * (_LOG_2PI + jnp.log(var) + ((y - f_loc) ** 2 + f_var) / var)


def gauss_hermite(likelihood, y, f_loc, f_var, num_points: int = DEFAULT_POINTS) -> jax.Array:
    """E[log p(y | f)] under f ~ N(f_loc, f_var), elementwise, by Gauss-Hermite quadrature;
    `likelihood` maps an array of f values to a NumPyro distribution of the same batch shape."""
    nodes, weights = hermite_rule(num_points)
    dtype = jnp.result_type(f_loc, f_var)
    f_loc, f_var = jnp.asarray(f_loc, dtype), jnp.asarray(f_var, dtype)
    shape = jnp.broadcast_shapes(f_loc.shape, f_var.shape)
    x = jnp.asarray(nodes, dtype).reshape((num_points,) + (1,) * len(shape))
    positive = f_var > 0  # sqrt's gradient at 0 is infinite: give 0 there instead (the double where)
    sd = jnp.where(positive, jnp.sqrt(jnp.where(positive, f_var, 1.0)), 0.0)
    f = f_loc + sd * x  # (K,) + shape
    log_lik = likelihood(f).log_prob(y)
    if log_lik.shape[:1] != (num_points,) or log_lik.ndim != f.ndim:
        raise ValueError(
            f"the likelihood must map f of shape {f.shape} to a distribution of batch shape {f.shape} (one "
            f"observation per f, event shape ()); its log_prob(y) had shape {log_lik.shape}"
        )
    return jnp.tensordot(jnp.asarray(weights, dtype), log_lik, axes=1)


def expected_log_likelihood(name: str, likelihood, y, f_loc, f_var, num_points: int = DEFAULT_POINTS) -> jax.Array:
    """Add `numpyro.factor(name, E[log p(y_i | f_i)])` to the model and return those terms
    (shape of y): exact for `Gaussian(scale)`, Gauss-Hermite for a function f -> distribution.
    Call it inside the data plate (a subsampled plate scales it by N / B, as NumPyro scales any
    site in it), with `f_loc`, `f_var` from `SVGP.conditional` at the same inputs."""
    y = jnp.asarray(y)
    if jnp.shape(f_loc) != y.shape or jnp.shape(f_var) != y.shape:
        raise ValueError(f"{name}: y, f_loc and f_var must have one shape, got {y.shape}, {jnp.shape(f_loc)} and "
                         f"{jnp.shape(f_var)} (pass f_loc, f_var at the inputs of these observations)")
    try:
        terms = expected_terms(likelihood, y, f_loc, f_var, num_points)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None
    numpyro.factor(name, terms)
    return terms


def expected_terms(likelihood, y, f_loc, f_var, num_points: int = DEFAULT_POINTS) -> jax.Array:
    """E[log p(y_i | f_i)] under f_i ~ N(f_loc_i, f_var_i), elementwise: exact for
    `Gaussian(scale)`, Gauss-Hermite for a function f -> NumPyro distribution."""
    if isinstance(likelihood, Gaussian):
        return gaussian_expectation(likelihood, y, f_loc, f_var)
    if callable(likelihood):
        return gauss_hermite(likelihood, y, f_loc, f_var, num_points)
    raise TypeError(f"the likelihood must be provi.gp.Gaussian(scale) or a function f -> NumPyro distribution, "
                    f"got {type(likelihood).__name__}")

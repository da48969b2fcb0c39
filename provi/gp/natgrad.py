"""The SVGP bound at a Gaussian q(u) = N(m, S) in closed form, and natural-gradient steps for q(u)
(Salimbeni, Eleftheriadis & Hensman 2018; Hensman, Fusi & Lawrence 2013), for any likelihood that
`provi.gp.likelihoods` integrates.

For the whitened SVGP, f_i = f(x_i) is Gaussian under q: mean mu_i = a_i^T m and variance
s_i^2 = v_i + a_i^T S a_i (`SVGP.project` gives A and v). On a minibatch B of the N data points
(c = N / |B|), the bound is

    L(m, S) = c sum_{i in B} E_{N(f; mu_i, s_i^2)}[log p(y_i | f)] - KL(N(m, S) || N(0, I)),

an unbiased estimate of the full-data bound (`elbo`). Its natural gradient in q's natural
parameters (S^-1 m, -S^-1 / 2) is its gradient in the expectation parameters (m, S + m m^T). With
g_mu_i, g_v_i the derivatives of the i-th expected log-likelihood in mu_i and s_i^2 (exact for a
Gaussian likelihood, by Gauss-Hermite quadrature otherwise), a step of size g is

    S^-1     <- (1 - g) S^-1     + g (I - 2 c A_B^T diag(g_v) A_B)
    S^-1 m   <- (1 - g) S^-1 m   + g c A_B^T (g_mu - 2 g_v * mu)

(`natgrad_step`). For y_i ~ N(f_i, s^2), g_v = -1 / (2 s^2) and g_mu - 2 g_v mu = y / s^2: the
targets are the conjugate posterior's, and with the whole data set one step of size 1 lands on the
optimal q(u). For a likelihood log-concave in f (Bernoulli, Poisson, ...), g_v <= 0 and every step
keeps S positive definite; for one that is not (Student-t), keep the steps small (a non-finite S
says the step was too large). Hyperparameters go by optax on `elbo` in the same loop. Both take
an `LMC` (`provi.gp.multi`, several outputs; y of shape (n, P)) where they take an `SVGP`.

>>> import jax.numpy as jnp
>>> from tinygp import kernels
>>> from provi.gp.likelihoods import Gaussian
>>> from provi.gp.svgp import SVGP
>>> svgp = SVGP(kernels.ExpSquared(), jnp.linspace(-1.0, 1.0, 3))
>>> x, y = jnp.linspace(-1.0, 1.0, 10), jnp.zeros(10)
>>> mean, cov = natgrad_step(svgp, jnp.zeros(3), jnp.eye(3), x, y, Gaussian(0.1), n_data=10, step_size=1.0)
>>> mean.shape, cov.shape
((3,), (3, 3))
>>> bool(elbo(svgp, mean, cov, x, y, Gaussian(0.1), n_data=10) > elbo(svgp, jnp.zeros(3), jnp.eye(3), x, y, Gaussian(0.1), n_data=10))
True
"""

import numbers

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from provi.gp.likelihoods import DEFAULT_POINTS, Gaussian, expected_terms
from provi.gp.svgp import SVGP

__all__ = ["elbo", "natgrad_step", "marginals"]


def marginals(svgp: SVGP, mean, cov, x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(A, mu, s2)` at the inputs `x`: A = K_xz L^-T (n, M), and the mean A m and variance
    v + diag(A S A^T) of f(x) under q(u) = N(`mean`, `cov`), each (n,). For an `LMC`: A of
    shape (n, P, K), the others (n, P)."""
    mean, cov = _checked(svgp, mean, cov)
    a, v = svgp.project(x)
    return a, a @ mean, v + jnp.sum((a @ cov) * a, axis=-1)


def elbo(svgp: SVGP, mean, cov, x, y, likelihood, n_data, num_points: int = DEFAULT_POINTS) -> jax.Array:
    """The SVGP bound at q(u) = N(`mean`, `cov`) estimated on the minibatch (`x`, `y`) of a data
    set of `n_data` points (unbiased; exact with the whole data set): the likelihood is
    `provi.gp.Gaussian(scale)`, a scale (the same), or a function f -> NumPyro distribution
    (Gauss-Hermite with `num_points` nodes). Differentiable in everything, for optax."""
    _, mu, s2 = marginals(svgp, mean, cov, x)
    ell = jnp.sum(expected_terms(_likelihood(likelihood), _targets(y, mu), mu, s2, num_points))
    return ell * (n_data / mu.shape[0]) - _kl_standard(jnp.asarray(mean), jnp.asarray(cov))


def natgrad_step(svgp: SVGP, mean, cov, x, y, likelihood, n_data, step_size=0.1,
                 num_points: int = DEFAULT_POINTS) -> tuple[jax.Array, jax.Array]:
    """One natural-gradient step of q(u) = N(`mean`, `cov`) on the minibatch (`x`, `y`) of a data
    set of `n_data` points: the new `(mean, cov)`. `likelihood` as in `elbo`. With a Gaussian
    likelihood and the whole data set, `step_size` 1 gives the optimum; `step_size` may be a traced
    value (a schedule's) under jit."""
    if isinstance(step_size, numbers.Real) and not 0.0 < step_size <= 1.0:
        raise ValueError(f"step_size must be in (0, 1], got {step_size!r}")
    a, mu, s2 = marginals(svgp, mean, cov, x)
    y = _targets(y, mu)
    lik = _likelihood(likelihood)
    g_mu, g_v = jax.grad(lambda m, s: jnp.sum(expected_terms(lik, y, m, s, num_points)), argnums=(0, 1))(mu, s2)
    c = n_data / mu.shape[0]
    m = svgp.num_inducing  # several outputs (an LMC): each of the n x P values of f is one row
    a, mu, g_mu, g_v = a.reshape(-1, m), mu.reshape(-1), g_mu.reshape(-1), g_v.reshape(-1)
    eye = jnp.eye(m, dtype=a.dtype)
    precision = cho_solve((jnp.linalg.cholesky(cov), True), eye)
    target_precision = eye - 2.0 * c * (a * g_v[:, None]).T @ a
    target_linear = c * a.T @ (g_mu - 2.0 * g_v * mu)
    new_precision = (1 - step_size) * precision + step_size * target_precision
    new_linear = (1 - step_size) * (precision @ mean) + step_size * target_linear
    new_chol = jnp.linalg.cholesky(0.5 * (new_precision + new_precision.T))
    new_cov = cho_solve((new_chol, True), eye)
    return cho_solve((new_chol, True), new_linear), 0.5 * (new_cov + new_cov.T)


def _checked(svgp, mean, cov):
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    m = svgp.num_inducing
    if mean.shape != (m,) or cov.shape != (m, m):
        raise ValueError(f"mean and cov must have shapes ({m},) and ({m}, {m}), got {mean.shape} and {cov.shape}")
    return mean, cov


def _targets(y, mu):
    y = jnp.asarray(y)
    if y.shape != mu.shape:
        raise ValueError(f"y must have shape {mu.shape}, one value per input, got {y.shape}")
    return y


def _likelihood(likelihood):
    """A Gaussian, a function f -> distribution, or a noise scale (a Gaussian of that scale)."""
    return likelihood if isinstance(likelihood, Gaussian) or callable(likelihood) else Gaussian(likelihood)


def _kl_standard(mean, cov) -> jax.Array:
    """KL(N(mean, cov) || N(0, I))."""
    chol = jnp.linalg.cholesky(cov)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return 0.5 * (jnp.trace(cov) + mean @ mean - mean.shape[0] - logdet)

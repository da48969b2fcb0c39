"""Natural-gradient steps for q(u) = N(m, S) under a Gaussian likelihood (Salimbeni, Eleftheriadis
& Hensman 2018; Hensman, Fusi & Lawrence 2013).

For y_i ~ N(f(x_i), s_i^2) and the whitened SVGP, the bound is, as a function of q's natural
parameters (S^-1 m, -S^-1 / 2), the KL to the Gaussian with precision I + A^T diag(s^-2) A and
linear term A^T diag(s^-2) y, summed over the data (A = K_xz L^-T, `SVGP.project`). Its natural
gradient is that target minus the current natural parameters, so a step of size g is

    S^-1      <- (1 - g) S^-1     + g (I + c A_B^T diag(s^-2) A_B)
    S^-1 m    <- (1 - g) S^-1 m   + g c A_B^T diag(s^-2) y_B

on a minibatch B of the N data points, c = N / |B| (an unbiased estimate of the full-data target).
With the whole data set and g = 1, one step lands on the optimal q(u). This is a step of its own,
for a user's loop over minibatches (hyperparameters by optax in the same loop); `provi.fit` fits
q(u) with its optimiser instead.

>>> import jax.numpy as jnp
>>> from tinygp import kernels
>>> from provi.gp.svgp import SVGP
>>> svgp = SVGP(kernels.ExpSquared(), jnp.linspace(-1.0, 1.0, 3))
>>> x, y = jnp.linspace(-1.0, 1.0, 10), jnp.zeros(10)
>>> mean, cov = natgrad_step(svgp, jnp.zeros(3), jnp.eye(3), x, y, 0.1, n_data=10, step_size=1.0)
>>> mean.shape, cov.shape
((3,), (3, 3))
"""

import numbers

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from provi.gp.svgp import SVGP

__all__ = ["natgrad_step"]


def natgrad_step(svgp: SVGP, mean, cov, x, y, noise_scale, n_data, step_size=0.1) -> tuple[jax.Array, jax.Array]:
    """One natural-gradient step of q(u) = N(`mean`, `cov`) on the minibatch (`x`, `y`) of a data
    set of `n_data` points, with Gaussian noise of scale `noise_scale` (a scalar or one per point):
    the new `(mean, cov)`. `step_size` 1 with the whole data set gives the optimum; it may be a
    traced value (a schedule's) under jit."""
    mean, cov, y = jnp.asarray(mean), jnp.asarray(cov), jnp.asarray(y)
    m = svgp.num_inducing
    if mean.shape != (m,) or cov.shape != (m, m):
        raise ValueError(f"mean and cov must have shapes ({m},) and ({m}, {m}), got {mean.shape} and {cov.shape}")
    if isinstance(step_size, numbers.Real) and not 0.0 < step_size <= 1.0:
        raise ValueError(f"step_size must be in (0, 1], got {step_size!r}")
    a, _ = svgp.project(x)
    if y.shape != a.shape[:1]:
        raise ValueError(f"y must have shape ({a.shape[0]},), one value per input, got {y.shape}")
    weight = jnp.broadcast_to(1.0 / jnp.asarray(noise_scale) ** 2, y.shape) * (n_data / y.shape[0])
    eye = jnp.eye(m, dtype=cov.dtype)
    chol = jnp.linalg.cholesky(cov)
    precision = cho_solve((chol, True), eye)
    new_precision = (1 - step_size) * precision + step_size * (eye + (a * weight[:, None]).T @ a)
    new_linear = (1 - step_size) * (precision @ mean) + step_size * (a.T @ (weight * y))
    new_chol = jnp.linalg.cholesky(0.5 * (new_precision + new_precision.T))
    new_cov = cho_solve((new_chol, True), eye)
    return cho_solve((new_chol, True), new_linear), 0.5 * (new_cov + new_cov.T)

"""Natural-gradient Gaussian VI: the Bayesian learning rule (Khan & Rue 2023) for provi's Gaussian
families, as an optax transformation.

With target exp(-V), q = N(m, S) and precision P = S^-1, the natural gradient of the loss
-ELBO = E_q[V] - entropy(q) in q's natural parameters moves P towards E_q[hess V] and the mean along
S E_q[grad V]. One step of size r (at most 1):

    P <- (1 - r) P + r psd(E_q[hess V])
    m <- m - r P^-1 E_q[grad V]             (with the new P)

`psd` sets the negative eigenvalues of the Monte Carlo Hessian estimate to zero, so P stays
positive definite whatever the estimate (as the Gauss-Newton curvature of VOGN and IVON does). The
optimum of the ELBO is its fixed point where the target's Hessian is positive semi-definite (a
log-concave target); elsewhere the step uses the curvature's positive part. For a Gaussian target
with exact expectations, r = 1 reaches the target in one step; on a conjugate model (a sparse GP
with a Gaussian likelihood, whose inducing values' posterior is Gaussian) it converges in a few
steps where Adam takes hundreds (Salimbeni, Eleftheriadis & Hensman 2018).

Tried and dropped: the positive-definite correction of Lin, Schmidt & Khan (2020),
P <- P - r G + (r^2 / 2) G S G with G = P - E_q[hess V], which keeps P positive definite without
clipping; its r^2 term is quadratic in the estimate's noise, and on a sparse GP with minibatches
and learned inducing inputs (benchmarks/gp_natgrad_fit.py) it made the loss non-finite within 300
steps in float32 (step sizes 0.1 with one particle and 0.5 with eight) and with 0.5 in float64;
with 0.1 in float64 it stayed finite but ended below Adam.

`E_q[grad V]` and `E_q[hess V]` come from the ELBO's gradient exactly as for the Wasserstein steps
(`provi.optim.wasserstein`: Stein's identity, `hessian_from_tril`), so nothing is evaluated beyond
what `provi.fit` computes anyway. The diagonal version runs coordinate by coordinate for
`guide="meanfield"`.

    res = provi.fit(model, *args, guide="fullrank", objective=provi.ELBO(num_particles=8),
                    optimizer=provi.optim.natgrad(0.1, others=optax.adam(1e-2)))
"""

import jax
import jax.numpy as jnp
import optax

from provi.optim.wasserstein import diagonal_expectations, gaussian_expectations, gaussian_transform, scale_tril_raw

__all__ = ["natgrad", "natural_precision", "psd"]

DEFAULT_STEP = 0.1


def psd(H: jax.Array) -> jax.Array:
    """The symmetric part of `H` with its negative eigenvalues set to zero (the nearest positive
    semi-definite matrix in the Frobenius norm)."""
    lam, U = jnp.linalg.eigh(0.5 * (H + H.T))
    return (U * jnp.maximum(lam, 0.0)) @ U.T


def natural_precision(P: jax.Array, H: jax.Array, r) -> jax.Array:
    """The precision after one natural-gradient step of size `r` (at most 1) from precision `P`
    towards the Hessian estimate `H`: (1 - r) P + r psd(H), positive definite for any symmetric
    `H` and `P` itself where `H` is `P`."""
    return (1 - r) * P + r * psd(H)


def _full_step(loc, raw, g_loc, g_raw, r):
    L, H = gaussian_expectations(raw, g_raw)
    eye = jnp.eye(L.shape[0], dtype=L.dtype)
    L_inv = jax.scipy.linalg.solve_triangular(L, eye, lower=True)
    P = natural_precision(L_inv.T @ L_inv, H, r)
    # the new covariance's lower Cholesky factor without forming the covariance (float32 loses a
    # badly conditioned one): with C C' = J P J (J reverses the order), P^-1 = (J C^-T J)(J C^-T J)'
    C = jnp.linalg.cholesky(P[::-1, ::-1])
    L_new = jax.scipy.linalg.solve_triangular(C, eye, lower=True).T[::-1, ::-1]
    return loc - r * L_new @ (L_new.T @ g_loc), scale_tril_raw(L_new)


def _diag_step(loc, log_scale, g_loc, g_log, r):
    s2, h = diagonal_expectations(log_scale, g_log)
    p_new = (1 - r) / s2 + r * jnp.maximum(h, 0.0)
    return loc - r * g_loc / p_new, -0.5 * jnp.log(p_new)


def natgrad(step_size: float | optax.Schedule = DEFAULT_STEP,
            others: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """Natural-gradient VI (the Bayesian learning rule, the Hessian estimate's positive part;
    module docstring) for provi's `guide="fullrank"` (and, by coordinate,
    `"meanfield"`), with step size `step_size` (at most 1; an optax schedule allowed) and the
    model's `numpyro.param` sites moved by the optax transformation `others` (required where the
    model has any). Use it with `provi.ELBO()` (not `provi.STL()`, whose gradient lacks the
    entropy term the Hessian is read from); with one particle the Hessian estimate is noisy away
    from the mode, so from a prior start take several.

    >>> import optax, provi
    >>> opt = provi.optim.natgrad(0.2, others=optax.adam(1e-2))
    """
    if not callable(step_size) and not 0.0 < step_size <= 1.0:
        raise ValueError(f"natgrad: step_size must be in (0, 1] or a schedule (an optax schedule of the step count), "
                         f"got {step_size!r}")
    return gaussian_transform("natgrad", step_size, _full_step, _diag_step, others)

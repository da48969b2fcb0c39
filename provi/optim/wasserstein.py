"""Gaussian VI as a Wasserstein gradient flow: forward-backward Gaussian VI (Diao, Balasubramanian,
Chewi & Salim 2023) and Bures-Wasserstein SGD (Lambert et al. 2022), as optax transformations for
provi's Gaussian families.

With target exp(-V) and q = N(m, S), one forward-backward step of size h is

    m  <- m - h E_q[grad V]
    M   = I - h E_q[hess V],   S' = M S M                    (forward: the potential energy)
    S  <- (S' + 2h I + (S' (S' + 4h I))^(1/2)) / 2           (backward: the entropy's JKO step)

and a Bures-Wasserstein SGD step replaces the backward step by S <- N S N with N = I - h (E[hess V]
- S^-1). Both read E_q[grad V] and E_q[hess V] off the ELBO's gradient that `provi.fit` computes
anyway: with x = m + L eps, the loss -ELBO = E[V(x)] + E[log q(x)] has gradient E[grad V] in m and
E[grad V eps'] - L^-T in L, and by Stein's identity E[grad V eps'] = E[hess V] L. The family keeps
only L's lower triangle, and that is enough: tril(H L) with L lower-triangular determines the
symmetric H (`hessian_from_tril`), so the Hessian estimate is unbiased for E_q[hess V] from the
same Monte Carlo draws. The diagonal versions do the same coordinate by coordinate for
`guide="meanfield"`.

Use them with the default objective, `provi.ELBO()` (its gradient carries the entropy's exact
gradient: path-derivative objectives such as `provi.STL()` drop it); the model's `numpyro.param`
sites, if any, follow the optax transformation given as `others`:

    res = provi.fit(model, *args, guide="fullrank", optimizer=provi.optim.fb_gvi(0.1))

provi fits families in a space whitened by the start's curvature, where the Hessian at the mode is
the identity: a step size h below 1 is stable near the mode (the theory asks h <= 1 / smoothness),
and `fb_gvi()`'s default, 0.1, leaves room for curvature ten times the mode's. With minibatches the
same steps are the stochastic versions (the gradient is an unbiased estimate).
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["fb_gvi", "bw_sgd", "jko_entropy", "hessian_from_tril", "WassersteinState", "gaussian_transform",
           "gaussian_expectations", "diagonal_expectations"]

DEFAULT_STEP = 0.1


class WassersteinState(NamedTuple):
    """The step count, and the state of the transformation of the model's `numpyro.param` sites
    (`others`; () without one)."""

    count: jax.Array
    others: Any = ()


def jko_entropy(S: jax.Array, h) -> jax.Array:
    """The entropy's JKO step from covariance S: (S + 2h I + (S (S + 4h I))^(1/2)) / 2, by one
    eigendecomposition (S and S + 4h I commute). Its inverse is the forward entropy step:
    S = (I - h T^-1) T (I - h T^-1) for T = jko_entropy(S, h)."""
    lam, U = jnp.linalg.eigh(0.5 * (S + S.T))
    lam = jnp.maximum(lam, 0.0)
    new = 0.5 * (lam + 2 * h + jnp.sqrt(lam * (lam + 4 * h)))
    return (U * new) @ U.T


def hessian_from_tril(B: jax.Array, L: jax.Array) -> jax.Array:
    """The symmetric H with tril(H L) = B, for L lower-triangular with a positive diagonal: column
    by column from the last, each entry below the diagonal of column j needs only columns > j,
    and the diagonal entry the row just completed."""
    d = L.shape[0]
    idx = jnp.arange(d)

    def column(k, H):
        j = d - 1 - k
        lj = jnp.where(idx > j, L[:, j], 0.0)  # L[k, j] for k > j
        below = (B[:, j] - H @ lj) / L[j, j]  # valid for i > j (H[i, k], i, k > j, already known)
        below = jnp.where(idx > j, below, 0.0)
        H = H.at[:, j].set(jnp.where(idx > j, below, H[:, j])).at[j, :].set(jnp.where(idx > j, below, H[j, :]))
        diag = (B[j, j] - H[j] @ lj) / L[j, j]
        return H.at[j, j].set(diag)

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(L))


def _tril_factor(raw):
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))


def scale_tril_raw(L):
    """The full-rank family's stored `scale_tril` for the Cholesky factor `L` (log diagonal)."""
    return jnp.tril(L, -1) + jnp.diag(jnp.log(jnp.diag(L)))


def gaussian_expectations(raw, g_raw):
    """`(L, E_q[hess V])` read off the loss gradient `g_raw` in a full-rank Gaussian's stored
    `scale_tril` (`raw`); E_q[grad V] is the gradient in `loc` itself. The module docstring says how."""
    L = _tril_factor(raw)
    d = jnp.diag(L)
    # the loss's gradient in L: tril(E[grad V eps'] - L^-T); its diagonal came through L_ii = exp(raw_ii)
    g_L = jnp.tril(g_raw, -1) + jnp.diag(jnp.diag(g_raw) / d)
    B = g_L + jnp.diag(1.0 / d)  # tril(E[grad V eps']) = tril(H L)
    return L, hessian_from_tril(B, L)


def diagonal_expectations(log_scale, g_log):
    """`(s^2, E_q[hess V]'s diagonal)` read off the loss gradient of a mean-field Gaussian: by
    Stein, E[d_i V eps_i] = E[d_ii V] s_i, and d loss / d log s_i = (E[d_i V eps_i] - 1 / s_i) s_i."""
    s2 = jnp.exp(2 * log_scale)
    return s2, (g_log + 1.0) / s2


def _full_step(loc, raw, g_loc, g_raw, h, backward: bool):
    L, H = gaussian_expectations(raw, g_raw)
    S = L @ L.T
    eye = jnp.eye(L.shape[0], dtype=L.dtype)
    if backward:
        M = eye - h * H
        S = jko_entropy(M @ S @ M, h)
    else:
        N = eye - h * (H - jnp.linalg.inv(S))
        S = N @ S @ N
    S = 0.5 * (S + S.T)
    return loc - h * g_loc, scale_tril_raw(jnp.linalg.cholesky(S))


def _diag_step(loc, log_scale, g_loc, g_log, h, backward: bool):
    s2, H = diagonal_expectations(log_scale, g_log)
    if backward:
        v = (1 - h * H) ** 2 * s2
        v = 0.5 * (v + 2 * h + jnp.sqrt(v * (v + 4 * h)))
    else:
        v = (1 - h * (H - 1.0 / s2)) ** 2 * s2
    return loc - h * g_loc, 0.5 * jnp.log(v)


def gaussian_transform(name: str, step_size, full_step: Callable, diag_step: Callable,
                       others: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """An optax transformation that moves provi's Gaussian guide (`"fullrank"`: `loc`,
    `scale_tril`; `"meanfield"`: `loc`, `log_scale`) by `full_step(loc, raw, g_loc, g_raw, h)` or
    `diag_step(loc, log_scale, g_loc, g_log, h)` (each returns the new pair), with step size `h`
    (a number or an optax schedule), and the model's `numpyro.param` sites by `others`."""
    if not callable(step_size) and not (step_size > 0):
        raise ValueError(f"{name}: step_size must be > 0 or a schedule (an optax schedule of the step count), got {step_size!r}")
    step_at = step_size if callable(step_size) else (lambda count: step_size)

    def init(params):
        return WassersteinState(jnp.zeros((), jnp.int32), others.init(params.get("model", {})) if others is not None else ())

    def update(grads, state, params=None):
        if params is None:
            raise ValueError(f"{name} needs the current parameters: optimizer.update(grads, state, params)")
        guide, g = params["guide"], grads["guide"]
        if jax.tree.leaves(params.get("model", {})) and others is None:
            raise ValueError(
                f"{name} updates the Gaussian guide, and this model has numpyro.param sites "
                f"({sorted(params['model'])}): give an optax optimizer for them, {name}(..., others=optax.adam(1e-2)), "
                f"or make them latent sites"
            )
        keys, h = set(guide), step_at(state.count)
        if keys == {"loc", "scale_tril"}:
            loc, second = full_step(guide["loc"], guide["scale_tril"], g["loc"], g["scale_tril"], h)
            new = {"loc": loc, "scale_tril": second}
        elif keys == {"loc", "log_scale"}:
            loc, second = diag_step(guide["loc"], guide["log_scale"], g["loc"], g["log_scale"], h)
            new = {"loc": loc, "log_scale": second}
        else:
            raise ValueError(
                f"{name} updates guide='fullrank' or guide='meanfield' (a Gaussian with parameters loc and scale_tril "
                f"or log_scale), not a guide with parameters {sorted(keys)}; use an optax optimizer for it"
            )
        updates = jax.tree.map(jnp.zeros_like, params)
        updates["guide"] = jax.tree.map(jnp.subtract, new, guide)
        other_state = state.others
        if others is not None:
            updates["model"], other_state = others.update(grads["model"], state.others, params["model"])
        return updates, WassersteinState(state.count + 1, other_state)

    return optax.GradientTransformation(init, update)


def fb_gvi(step_size: float | optax.Schedule = DEFAULT_STEP,
           others: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """Forward-backward Gaussian VI (Diao et al. 2023) for provi's `guide="fullrank"` (and, by
    coordinate, `"meanfield"`): the module docstring gives the step. `step_size` may be an optax
    schedule: with a noisy Hessian estimate a constant step leaves the covariance inflated by
    about h^2 times the estimate's variance, which a decreasing step removes. `others`: an optax
    transformation for the model's `numpyro.param` sites (required where it has any)."""
    return gaussian_transform("fb_gvi", step_size, functools.partial(_full_step, backward=True),
                              functools.partial(_diag_step, backward=True), others)


def bw_sgd(step_size: float | optax.Schedule = DEFAULT_STEP,
           others: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """Bures-Wasserstein SGD (Lambert et al. 2022; Diao et al. 2023's explicit scheme): the
    forward-backward step with the entropy taken explicitly, S <- N S N, N = I - h (E[hess V] - S^-1).
    `others` as in `fb_gvi`."""
    return gaussian_transform("bw_sgd", step_size, functools.partial(_full_step, backward=False),
                              functools.partial(_diag_step, backward=False), others)

"""The mode of a log density, the curvature there, and the whitening it gives: for initialising and
preconditioning families (`provi.engine.start`).

Second derivatives are forward-over-reverse; reverse-over-reverse where the density has no
forward mode (`custom_vjp`: `jax.experimental.ode.odeint`); and central differences of the
gradient where it can be differentiated only once (diffrax's default adjoint)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["Mode", "converged", "newton_decrement", "newton_mode", "lbfgs_mode", "curvature",
           "value_grad_curvature", "whitening", "laplace_log_mass", "distinct_modes"]


class Mode(NamedTuple):
    """Result of a mode search: the point, its log density, the gradient's max-norm, iterations."""

    u: jax.Array
    log_density: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    curvature: jax.Array | None = None  # the negative Hessian at `u`, if the search computed it
    gradient: jax.Array | None = None  # the gradient at `u`


def _reverse_only(exc: Exception) -> bool:
    """Whether `exc` is JAX refusing forward-mode differentiation (a `custom_vjp` function, such
    as an ODE solver's adjoint, defines only the reverse mode)."""
    return isinstance(exc, TypeError) and "forward-mode" in str(exc)


def _no_second_reverse(exc: Exception) -> bool:
    """Whether `exc` is JAX refusing to differentiate a gradient again in reverse mode (a solver
    whose adjoint runs a `while_loop`, as diffrax's default `RecursiveCheckpointAdjoint`)."""
    return isinstance(exc, ValueError) and "Reverse-mode differentiation does not work" in str(exc)


def _difference_jacobian(grad_fn: Callable, u: jax.Array) -> jax.Array:
    """The Jacobian of `grad_fn` at `u` by central differences of the (reverse-mode) gradient, with
    steps eps^(1/3) * max(1, |u_i|): 2D gradient evaluations, for densities that can be
    differentiated only once."""
    step = jnp.finfo(u.dtype).eps ** (1 / 3) * jnp.maximum(1.0, jnp.abs(u))
    basis = jnp.eye(u.shape[0], dtype=u.dtype) * step[:, None]
    cols = jax.vmap(lambda e, s: (grad_fn(u + e) - grad_fn(u - e)) / (2 * s))(basis, step)
    return cols.T


def curvature(log_density: Callable, u: jax.Array) -> jax.Array:
    """The negative Hessian of `log_density` at `u` (the precision of the Laplace approximation):
    forward-over-reverse, or reverse-over-reverse where the density has no forward mode, or
    central differences of the gradient where it can be differentiated only once."""
    try:
        h = jax.hessian(log_density)(u)
    except TypeError as exc:
        if not _reverse_only(exc):
            raise
        try:
            h = jax.jacrev(jax.grad(log_density))(u)
        except ValueError as exc2:
            if not _no_second_reverse(exc2):
                raise
            h = _difference_jacobian(jax.grad(log_density), u)
    return -0.5 * (h + h.T)


def value_grad_curvature(log_density: Callable, u: jax.Array):
    """`(log density, gradient, negative Hessian)` at `u`, from one forward-over-reverse pass
    (reverse-over-reverse where the density has no forward mode: `custom_vjp`, ODE solvers)."""

    def grad_with_value(x):
        v, g = jax.value_and_grad(log_density)(x)
        return g, (v, g)

    try:
        h, (v, g) = jax.jacfwd(grad_with_value, has_aux=True)(u)
    except TypeError as exc:
        if not _reverse_only(exc):
            raise
        try:
            h, (v, g) = jax.jacrev(grad_with_value, has_aux=True)(u)
        except ValueError as exc2:
            if not _no_second_reverse(exc2):
                raise
            v, g = jax.value_and_grad(log_density)(u)
            h = _difference_jacobian(jax.grad(log_density), u)
    return v, g, -0.5 * (h + h.T)


def converged(mode: "Mode", tol: float = 1e-2) -> bool:
    """Whether a mode search (host values) ended at a stationary point: the gradient is small
    relative to the density."""
    return _stationary(float(mode.grad_norm), float(mode.log_density), tol)


def _stationary(grad_norm: float, v: float, tol: float) -> bool:
    return bool(np.isfinite(v) and grad_norm < tol * (1.0 + abs(v)))


def newton_decrement(h: np.ndarray, g: np.ndarray) -> float:
    """g^T H^-1 g: twice the log-density gain a Newton step expects (the squared gradient in
    posterior-sd units), computed in float64 on the host after Jacobi scaling; +inf where H is not
    positive definite."""
    h, g = np.asarray(h, np.float64), np.asarray(g, np.float64)
    s = 1.0 / np.sqrt(np.maximum(np.abs(np.diag(h)), 1e-30))
    try:
        chol = np.linalg.cholesky(h * s[:, None] * s[None, :])
    except np.linalg.LinAlgError:
        return float("inf")
    y = np.linalg.solve(chol, s * g)
    return float(y @ y) if np.all(np.isfinite(y)) else float("inf")


def _converged(g, v, tol):
    return jnp.max(jnp.abs(g), initial=0.0) < tol * (1.0 + jnp.abs(v))


def newton_mode(vgh: Callable, u0: np.ndarray, max_iter: int = 200, tol: float = 1e-5) -> Mode:
    """Maximise a log density by damped Newton steps (Levenberg-Marquardt), driven from the host.

    `vgh(u) -> (log density, gradient, symmetric negative Hessian)` is one compiled evaluation (see
    `value_grad_curvature`); the steps are solved in float64 with NumPy. A trial point is kept only
    if it raises the density to a finite value with finite derivatives; the damping shrinks after a
    kept step and grows after a rejected one or while the damped curvature is not positive
    definite, so the search never leaves the finite region. Only the density's derivatives are
    compiled, which keeps the start of a fit quick to compile. Returns host arrays.
    """
    u = trial = np.asarray(u0, np.float64)
    d = u.shape[0]
    v, g, h = -np.inf, np.zeros(d), np.full((d, d), np.nan)
    lam, it = 1e-2 / 0.2, 0
    while it < max_iter:
        it += 1
        vn, gn, hn = (np.asarray(x, np.float64) for x in jax.device_get(vgh(trial)))
        ok = bool(np.isfinite(vn) and vn >= v and np.all(np.isfinite(gn)) and np.all(np.isfinite(hn)))
        if ok:
            u, v, g, h, lam = trial, float(vn), gn, hn, max(lam * 0.2, 1e-8)
        else:
            lam *= 10.0
        if (it == 1 and not ok) or _stationary(np.max(np.abs(g), initial=0.0), v, tol):
            break
        step = None
        while step is None and lam <= 1e12:
            try:
                chol = np.linalg.cholesky(h + np.diag(lam * (1.0 + np.abs(np.diag(h)))))
                step = np.linalg.solve(chol.T, np.linalg.solve(chol, g))
            except np.linalg.LinAlgError:
                step = None
            if step is None or not np.all(np.isfinite(step)):  # not positive definite yet: damp more
                step, lam = None, lam * 10.0
        if step is None:
            break
        trial = u + step
    return Mode(u, np.asarray(v), np.max(np.abs(g), initial=0.0), np.asarray(it), h, g)


def lbfgs_mode(log_density: Callable, u0: jax.Array, max_iter: int = 1000, tol: float = 1e-5) -> Mode:
    """Maximise `log_density` with L-BFGS (optax, zoom line search); jit-compatible."""
    f = lambda u: -log_density(u)
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        u, state, _, it = carry
        value, grad = value_and_grad(u, state=state)
        updates, new_state = opt.update(grad, state, u, value=value, grad=grad, value_fn=f)
        new_u = optax.apply_updates(u, updates)
        finite = jnp.all(jnp.isfinite(new_u))
        return jnp.where(finite, new_u, u), new_state, ~finite, it + 1

    def keep_going(carry):
        _, state, stuck, it = carry
        g = optax.tree_utils.tree_get(state, "grad")
        v = optax.tree_utils.tree_get(state, "value")
        return (it == 0) | ((it < max_iter) & ~_converged(g, v, tol) & ~stuck)

    init = (u0, opt.init(u0), jnp.asarray(False), jnp.asarray(0))
    u, _, _, it = jax.lax.while_loop(keep_going, step, init)
    v, g = jax.value_and_grad(log_density)(u)
    return Mode(u, v, jnp.max(jnp.abs(g), initial=0.0), it, gradient=g)


def whitening(h: np.ndarray, tril: bool) -> tuple[np.ndarray, float]:
    """P with P P^T = H^-1 (lower triangular when `tril`, else diagonal), computed in float64 on
    the host after Jacobi scaling, with non-positive curvature lifted; and the smallest
    eigenvalue of the scaled H (<= 0: not a strict maximum).

    Scaling first matters: posteriors like a regression on an uncentred predictor have Hessians
    whose eigenvalues span fourteen orders of magnitude, but only five after scaling.
    """
    h = np.asarray(h, np.float64)
    h = 0.5 * (h + h.T)
    dg = np.abs(np.diag(h))
    dg = np.where(dg > 0, dg, 1.0)
    s = 1.0 / np.sqrt(dg)
    w, v = np.linalg.eigh(h * s[:, None] * s[None, :])
    lifted = np.maximum(np.abs(w), 1e-10 * max(np.max(np.abs(w)), 1e-30))
    if not tril:
        return s * np.sqrt(1.0 / np.diag((v * lifted) @ v.T)), float(np.min(w))
    cov = s[:, None] * ((v / lifted) @ v.T) * s[None, :]
    return np.linalg.cholesky(0.5 * (cov + cov.T)), float(np.min(w))


def laplace_log_mass(mode: Mode) -> float:
    """log of the mass the Laplace approximation puts at `mode` (host values):
    log p(u*) + D/2 log(2 pi) - 1/2 log det H, with H the curvature there; -inf where the search
    did not converge or H is not positive definite (not a strict maximum).

    >>> import numpy as np
    >>> m = Mode(np.zeros(1), np.asarray(-0.5 * np.log(2 * np.pi)), np.asarray(0.0), np.asarray(1), np.eye(1))
    >>> round(laplace_log_mass(m), 6)   # a standard normal's mode: all of its mass
    0.0
    """
    if mode.curvature is None or not converged(mode):
        return float("-inf")
    h = np.asarray(mode.curvature, np.float64)
    try:
        chol = np.linalg.cholesky(0.5 * (h + h.T))
    except np.linalg.LinAlgError:
        return float("-inf")
    d = h.shape[0]
    return float(float(mode.log_density) + 0.5 * d * np.log(2 * np.pi) - np.sum(np.log(np.diag(chol))))


def distinct_modes(modes: list[Mode], tol: float = 1.0) -> list[tuple[int, float]]:
    """The strict maxima among `modes`, one per basin, by decreasing Laplace mass:
    `[(index into modes, laplace_log_mass)]`. A mode within `tol` posterior standard deviations
    of a kept one of higher mass (Mahalanobis distance under either one's Laplace covariance) is
    the same mode found again.

    >>> import numpy as np
    >>> at = lambda x, v: Mode(np.array([x]), np.asarray(v), np.asarray(0.0), np.asarray(1), np.eye(1))
    >>> [(i, round(m, 3)) for i, m in distinct_modes([at(2.0, -1.0), at(-2.0, -3.0), at(2.001, -1.0)])]
    [(0, -0.081), (1, -2.081)]
    """
    mass = [laplace_log_mass(m) for m in modes]
    kept: list[tuple[int, float]] = []
    for i in sorted(range(len(modes)), key=lambda j: -mass[j]):
        if not np.isfinite(mass[i]):
            break
        u, h = np.asarray(modes[i].u, np.float64), np.asarray(modes[i].curvature, np.float64)
        if all(_mahalanobis(u, modes[j], h) > tol for j, _ in kept):
            kept.append((i, mass[i]))
    return kept


def _mahalanobis(u: np.ndarray, other: Mode, h: np.ndarray) -> float:
    """The larger of the distances from `u` to `other`'s point under `h` and under `other`'s curvature."""
    diff = u - np.asarray(other.u, np.float64)
    h2 = np.asarray(other.curvature, np.float64)
    return float(np.sqrt(max(diff @ h @ diff, diff @ h2 @ diff, 0.0)))

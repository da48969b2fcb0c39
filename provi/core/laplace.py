"""The mode of a log density and the curvature there, for initialising and preconditioning families."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["Mode", "converged", "find_mode", "newton_mode", "lbfgs_mode", "curvature", "NEWTON_MAX_DIM"]

NEWTON_MAX_DIM = 200  # Newton's method (one Hessian per iteration) up to here; L-BFGS above


class Mode(NamedTuple):
    """Result of a mode search: the point, its log density, the gradient's max-norm, iterations."""

    u: jax.Array
    log_density: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    curvature: jax.Array | None = None  # the negative Hessian at the last Newton iterate, if any


def curvature(log_density: Callable, u: jax.Array) -> jax.Array:
    """The negative Hessian of `log_density` at `u` (the precision of the Laplace approximation)."""
    h = jax.hessian(log_density)(u)
    return -0.5 * (h + h.T)


def converged(mode: "Mode", tol: float = 1e-2) -> jax.Array:
    """Whether a mode search ended at a stationary point (gradient small relative to the density)."""
    return jnp.isfinite(mode.log_density) & (mode.grad_norm < tol * (1.0 + jnp.abs(mode.log_density)))


def _converged(g, v, tol):
    return jnp.max(jnp.abs(g), initial=0.0) < tol * (1.0 + jnp.abs(v))


def newton_mode(log_density: Callable, u0: jax.Array, max_iter: int = 200, tol: float = 1e-5) -> Mode:
    """Maximise `log_density` by damped Newton steps (Levenberg-Marquardt); jit-compatible.

    A step is kept only if it raises the density to a finite value; the damping shrinks after a
    kept step and grows after a rejected one, so the search never leaves the finite region.
    """
    d = u0.shape[0]
    vg = jax.value_and_grad(log_density)

    def body(c):
        u, v, g, lam, it, _, _ = c
        h = curvature(log_density, u)
        scale = 1.0 + jnp.abs(jnp.diag(h))
        step = jnp.linalg.solve(h + lam * jnp.diag(scale), g)
        un = u + step
        vn, gn = vg(un)
        ok = jnp.isfinite(vn) & (vn >= v) & jnp.all(jnp.isfinite(gn)) & jnp.all(jnp.isfinite(un))
        u, v, g = jnp.where(ok, un, u), jnp.where(ok, vn, v), jnp.where(ok, gn, g)
        lam = jnp.where(ok, jnp.maximum(lam * 0.2, 1e-8), lam * 10.0)
        done = _converged(g, v, tol) | (lam > 1e12)
        return u, v, g, lam, it + 1, done, h

    v0, g0 = vg(u0)
    h0 = jnp.full((d, d), jnp.nan, u0.dtype)
    init = (u0, v0, g0, jnp.asarray(1e-2, u0.dtype), jnp.asarray(0), ~jnp.isfinite(v0), h0)
    u, v, g, _, it, _, h = jax.lax.while_loop(lambda c: (c[4] < max_iter) & ~c[5], body, init)
    return Mode(u, v, jnp.max(jnp.abs(g), initial=0.0), it, h)


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
    return Mode(u, v, jnp.max(jnp.abs(g), initial=0.0), it)


def find_mode(log_density: Callable, u0: jax.Array) -> Mode:
    """Newton's method in small dimension, L-BFGS above `NEWTON_MAX_DIM`."""
    return (newton_mode if u0.shape[0] <= NEWTON_MAX_DIM else lbfgs_mode)(log_density, u0)

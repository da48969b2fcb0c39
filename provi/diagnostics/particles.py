"""Diagnostics of a particle fit (SVGD): the kernel's bandwidth, the particles' spread and a
kernelised Stein discrepancy, where k-hat does not apply (particles have no density).

The discrepancy uses the IMQ kernel (Gorham & Mackey 2017: it detects non-convergence) in the
guide's coordinates, which provi whitens by the start's curvature, so it is comparable across
models. As a yardstick, `ksd_iid` is the same statistic's typical value for as many independent
draws from a Gaussian with the particles' mean and covariance, scored by that Gaussian: a fit whose
discrepancy is many times that yardstick has not converged (or its particles sit in too few modes).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.bound import BoundGuide, BoundModel, KeyStream
from provi.engine.layout import join_data
from provi.kernels import IMQ, ksd, median_bandwidth, pairwise_r2
from provi.objectives import log_target

__all__ = ["ParticleDiagnostics", "particle_diagnostics"]

COLLAPSE_SPREAD = 0.05  # particle sd, in units of the start's Laplace sd, below which particles have collapsed


@dataclasses.dataclass
class ParticleDiagnostics:
    """`n` particles; `bandwidth` of an RBF kernel by the median heuristic in the guide's
    (whitened) coordinates; `spread` the particles' sd per coordinate of the model's unconstrained
    space; `ksd` the IMQ kernelised Stein discrepancy and `ksd_iid` its yardstick."""

    n: int
    bandwidth: float
    spread: np.ndarray
    ksd: float
    ksd_iid: float
    messages: list

    def __str__(self):
        lines = [
            f"particles: {self.n}, RBF bandwidth (median heuristic) {self.bandwidth:.3g}, "
            f"spread (sd per unconstrained coordinate) {np.array2string(self.spread, precision=3, threshold=8)}",
            f"kernelised Stein discrepancy (IMQ) {self.ksd:.3g}; for as many independent Gaussian draws {self.ksd_iid:.3g}",
        ]
        return "\n".join(lines + [f"note: {m}" for m in self.messages])


@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _scores(model, guide, model_params, params, consts, layout, data):
    args, kwargs = join_data(data, layout)
    keys = KeyStream(jax.random.PRNGKey(0))
    bm = BoundModel(model, model_params, keys, args, kwargs)
    bg = BoundGuide(guide, params, consts, keys, args, kwargs)
    x, _ = guide.positions(params, consts)
    _, score = log_target(bm, bg, x)
    return x, score


def _gaussian_yardstick(x: jax.Array, key) -> jax.Array:
    m, c = jnp.mean(x, 0), jnp.cov(x.T, bias=True).reshape(x.shape[1], x.shape[1])
    c = c + 1e-9 * jnp.eye(x.shape[1], dtype=x.dtype)
    y = m + jax.random.normal(key, x.shape, x.dtype) @ jnp.linalg.cholesky(c).T
    return ksd(IMQ(), y, -jnp.linalg.solve(c, (y - m).T).T)


def particle_diagnostics(model, guide, params, consts, data, layout) -> ParticleDiagnostics:
    """The diagnostics of particle guide `guide` at `params` (with the model's parameters under
    `params["model"]`) for the model's data."""
    x, score = _scores(model, guide, params["model"], params["guide"], consts, layout, data)
    h = float(median_bandwidth(pairwise_r2(x)))
    P = jnp.asarray(consts["P"])
    u = x * P if P.ndim == 1 else x @ P.T
    spread = np.asarray(jnp.std(u, 0))
    value, yard = float(ksd(IMQ(), x, score)), float(_gaussian_yardstick(x, jax.random.PRNGKey(0)))
    messages = []
    if float(jnp.mean(jnp.std(x, 0))) < COLLAPSE_SPREAD:
        messages.append(
            "the particles have collapsed to a point (spread under 5% of the start's scale): the kernel's repulsion is "
            "too weak for this target; give the kernel a larger bandwidth (kernel=RBF(bandwidth=...)) or use a smaller "
            "learning rate"
        )
    if not np.isfinite(value):
        messages.append("the target's score is not finite at some particles: they sit where the model has no mass")
    elif value > 3 * yard:
        messages.append(
            f"the Stein discrepancy is {value / yard:.1f} times that of independent Gaussian draws: the particles have "
            "not converged (run more steps), or the target is far from Gaussian (compare runs with more particles)"
        )
    return ParticleDiagnostics(int(x.shape[0]), h, spread, value, yard, messages)

"""A set of particles: the empirical distribution of n points, moved by particle methods (SVGD).

Particles have no density: `provi.SVGD()` moves them along the Stein direction, and objectives
that need log q (the ELBO and its kin) refuse them. Draws resample the particles in balance: `n`
draws take every particle `n // N` times and `n % N` distinct particles at random, so moments
over a multiple of N draws are the particles' own.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from provi.core import rand
from provi.errors import ObjectiveError
from provi.guides.families import Family

__all__ = ["Particles"]


class Particles(Family):
    """`n` particles; they start as draws from the start's Gaussian (the Laplace approximation at
    the mode, where provi's start finds one) spread by `spread`.

    >>> from provi.guides import Particles
    >>> Particles(50)
    Particles(n=50)
    """

    n: int = 64
    spread: float = 1.0
    is_point: ClassVar[bool] = False
    has_density: ClassVar[bool] = False

    def __check_init__(self):
        if int(self.n) < 2:
            raise ValueError(f"Particles needs at least 2 particles, got n={self.n}")

    def init(self, key, dim, loc, scale):
        return {"particles": loc + self.spread * scale * rand.normal(key, (self.n, dim), loc.dtype)}

    def positions(self, params):
        return params["particles"]

    def sample(self, params, key, n):
        x = params["particles"]
        k1, k2 = jax.random.split(key)
        whole, rest = divmod(n, x.shape[0])
        idx = jnp.concatenate([jnp.tile(jnp.arange(x.shape[0]), whole), jax.random.permutation(k1, x.shape[0])[:rest]])
        idx = jax.random.permutation(k2, idx)
        return x[idx], jnp.zeros((n,), x.dtype)

    def log_prob(self, params, v):
        raise ObjectiveError(
            "Particles have no density, so objectives that score log q (ELBO, IWAE, ...) cannot move them: "
            "fit them with objective=provi.SVGD()"
        )

    def moments(self, params):
        x = params["particles"]
        m = jnp.mean(x, 0)
        return m, (x - m).T @ (x - m) / x.shape[0]

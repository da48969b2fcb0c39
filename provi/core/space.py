"""The unconstrained latent space: one flat vector for all continuous latent sites.

Families live on this vector. `constrain` maps it to the model's constrained values and returns
the log absolute Jacobian determinant of that map, so that log q of the constrained values is
`log q(u) - log|det J(u)|`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.model import LatentSite
from provi.core.trace import trace_model

__all__ = ["LatentSpace"]


@dataclasses.dataclass(frozen=True, eq=False)
class LatentSpace:
    """Flattening, constraining and unconstraining of a fixed set of continuous latent sites."""

    sites: tuple[LatentSite, ...]

    @classmethod
    def of(cls, sites: Sequence[LatentSite]) -> "LatentSpace":
        return cls(tuple(s for s in sites if not s.discrete))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def dim(self) -> int:
        return int(sum(s.size for s in self.sites))

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.cumsum([0] + [s.size for s in self.sites]))

    def labels(self) -> list[str]:
        """A name for every coordinate of the flat unconstrained vector, e.g. `tau`, `beta[2]` (0-based)."""
        out = []
        for s in self.sites:
            if s.size == 1 and s.unconstrained_shape == ():
                out.append(s.name)
            else:
                out.extend(f"{s.name}[{','.join(map(str, i))}]" for i in np.ndindex(*s.unconstrained_shape))
        return out

    def unflatten(self, u: jax.Array) -> dict[str, jax.Array]:
        """Split a flat vector (D,) into unconstrained site values."""
        off = self.offsets
        return {s.name: u[off[i] : off[i + 1]].reshape(s.unconstrained_shape) for i, s in enumerate(self.sites)}

    def flatten(self, values: dict[str, jax.Array]) -> jax.Array:
        """Join unconstrained site values into one flat vector (D,)."""
        if not self.sites:
            return jnp.zeros((0,))
        return jnp.concatenate([jnp.reshape(values[s.name], (-1,)) for s in self.sites])

    def constrain(self, u: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
        """Map a flat unconstrained vector (D,) to constrained site values and log|det J|."""
        z, ldj = {}, jnp.zeros((), u.dtype)
        for name, x in self.unflatten(u).items():
            t = self._transform(name)
            y = t(x)
            z[name] = y
            ldj = ldj + jnp.sum(t.log_abs_det_jacobian(x, y))
        return z, ldj

    def unconstrain(self, z: dict[str, jax.Array]) -> jax.Array:
        """Map constrained site values to the flat unconstrained vector (D,)."""
        return self.flatten({s.name: s.transform.inv(z[s.name]) for s in self.sites})

    def _transform(self, name):
        for s in self.sites:
            if s.name == name:
                return s.transform
        raise KeyError(name)

    def prior_point(self, model, key, args, kwargs) -> jax.Array:
        """The unconstrained flat vector of one prior draw, with zero for flat (improper) priors
        and for any coordinate that is not finite. Traceable."""
        tr = trace_model(model, args, kwargs, key, prior=True)
        parts = []
        for s in self.sites:
            u = jnp.reshape(s.transform.inv(tr[s.name]["value"]), (-1,))
            if s.improper:
                u = jnp.zeros_like(u)
            parts.append(jnp.where(jnp.isfinite(u), u, 0.0))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

"""A family guide's flat coordinates, for objectives that move the guide there: the points of a
particle guide (`particles`), the components of a Gaussian mixture (`components`), the mean and
scale of a Gaussian family (`gaussian`), and the map from those coordinates to the model's sites
(`place`). Re-exported by `provi.core.vocab`."""

import jax
import jax.numpy as jnp

from provi.core.bound import BoundGuide

__all__ = ["particles", "components", "gaussian", "place"]


def particles(guide: BoundGuide) -> tuple[jax.Array, jax.Array]:
    """`(x, metric)`: the particles (N, D) of a particle guide (`provi.guides.Particles`) in its
    flat coordinates, differentiable with respect to the guide's parameters (the gradient of an
    objective in `x` is the direction the particles move in), and the Euclidean metric of the
    model's unconstrained space in those coordinates (D, D; the guide's coordinates are whitened
    by the start's curvature)."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.particles takes the guide an objective receives")
    return guide.program.positions(guide.current_params(), guide.consts)


def components(guide: BoundGuide) -> tuple[jax.Array, jax.Array]:
    """`(loc, log_scale)`, each (K, D): the components of a mixture-of-Gaussians guide
    (`provi.guides.MeanFieldMixture`) in its flat coordinates (see `place`), differentiable with
    respect to the guide's parameters; component k is N(loc_k, diag(exp(log_scale_k))^2)."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.components takes the guide an objective receives")
    return guide.program.components(guide.current_params(), guide.consts)


def gaussian(guide: BoundGuide) -> tuple[jax.Array, jax.Array]:
    """`(loc, scale)`: the mean (D,) of a Gaussian family guide (`guide="meanfield"` or
    `"fullrank"`) in its flat coordinates (see `place`) and its scale, the scales (D,) of a
    mean-field family or the lower-triangular Cholesky factor (D, D) of a full-rank one, both
    differentiable with respect to the guide's parameters: the guide is N(loc, scale scale')."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.gaussian takes the guide an objective receives")
    return guide.program.gaussian(guide.current_params(), guide.consts)


def place(guide: BoundGuide, x: jax.Array) -> tuple[dict, jax.Array]:
    """`(values, log_jacobian)`: the model's latent sites at points `x` (..., D) of a family
    guide's flat coordinates (constrained, with leading axes of `x`) and log |det d values / d x|,
    so `provi.density(model, values) + log_jacobian` is the log target density of `x`."""
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.place takes the guide an objective receives")
    return guide.program.place(guide.consts, jnp.asarray(x))

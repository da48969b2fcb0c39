"""Several outputs: the linear model of coregionalisation (LMC) over whitened sparse GPs.

P outputs f_p(x) = sum_q W[p, q] g_q(x) mix Q independent GPs g_q, each a whitened SVGP with its
own kernel and inducing inputs (`provi.gp.SVGP`). Their whitened inducing values are stacked into
one latent site u of size K = M_1 + ... + M_Q, so a Gaussian family over u holds the correlations
between the latent functions that the data induce. Given u,

    f_p(x) | u ~ N(sum_q W[p, q] A_q(x) u_q,  sum_q W[p, q]^2 v_q(x)),

which `LMC.project` writes as one matrix A of shape (n, P, K) and variances v of shape (n, P): the
same form as a single SVGP's, so `provi.gp.predict`, `elbo` and `natgrad_step` take an `LMC` where
they take an `SVGP` (with y of shape (n, P)). The prior covariance of (f_p(x), f_p'(x')) is
sum_q W[p, q] W[p', q] k_q(x, x'): W W^T is each latent's coregionalisation matrix.

>>> import jax.numpy as jnp
>>> from tinygp import kernels
>>> from provi.gp.svgp import SVGP
>>> z = jnp.linspace(0.0, 1.0, 4)
>>> lmc = LMC([SVGP(kernels.ExpSquared(), z), SVGP(kernels.Matern32(), z)], jnp.array([[1.0, 0.5], [0.0, 2.0]]))
>>> loc, var = lmc.condition(jnp.zeros(8), jnp.array([0.2, 0.7, 0.9]))
>>> loc.shape, var.shape, lmc.num_inducing
((3, 2), (3, 2), 8)
"""

import jax
import jax.numpy as jnp

from provi.gp.svgp import SVGP, Whitened

__all__ = ["LMC"]


class LMC(Whitened):
    """Outputs `mixing @ [g_1(x), ..., g_Q(x)]` of the SVGPs `latents` (a sequence of Q
    `provi.gp.SVGP`); `mixing` has shape (P, Q). Build it inside the model when W or the kernels'
    hyperparameters are sites. `conditional(name, x)` samples the stacked site and returns the
    mean and variance of f(x), each (n, P): use them inside a data plate at `dim=-2` (outputs on
    the last axis)."""

    latents: tuple
    mixing: jax.Array

    def __init__(self, latents, mixing):
        latents = tuple(latents)
        if not latents or not all(isinstance(g, SVGP) for g in latents):
            raise TypeError("LMC takes a non-empty sequence of provi.gp.SVGP, one per latent function")
        mixing = jnp.asarray(mixing)
        if mixing.ndim != 2 or mixing.shape[1] != len(latents):
            raise ValueError(f"mixing must have shape (outputs, {len(latents)}), one column per latent SVGP, "
                             f"got {mixing.shape}")
        self.latents, self.mixing = latents, mixing

    @property
    def num_inducing(self) -> int:
        """K = M_1 + ... + M_Q, the size of the stacked whitened site."""
        return sum(g.num_inducing for g in self.latents)

    @property
    def num_outputs(self) -> int:
        return self.mixing.shape[0]

    def project(self, x) -> tuple[jax.Array, jax.Array]:
        """`(A, v)`: A of shape (n, P, K), the mean of f(x) given u is A u; v of shape (n, P),
        its variance given u."""
        parts = [g.project(x) for g in self.latents]
        w = self.mixing
        a = jnp.concatenate([w[None, :, q, None] * aq[:, None, :] for q, (aq, _) in enumerate(parts)], axis=-1)
        v = sum(w[None, :, q] ** 2 * vq[:, None] for q, (_, vq) in enumerate(parts))
        return a, v

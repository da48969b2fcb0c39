"""Pathwise estimators: `Reparam`, `LocalReparam`, `ImplicitReparam` and `RejectionReparam`."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import Distribution

from provi.core import rand
from provi.core.trace import base_distribution
from provi.defaults import QUADRATURE_NODES
from provi.estimators.base import Estimator

__all__ = ["Reparam", "LocalReparam", "ImplicitReparam", "RejectionReparam"]

sg = jax.lax.stop_gradient

# NumPyro samplers built on jax.random.gamma / beta / dirichlet, whose parameter gradients JAX
# computes by implicit differentiation of the CDF (Figurnov et al. 2018).
_IMPLICIT_NATIVE = (dist.Gamma, dist.Chi2, dist.Beta, dist.Dirichlet, dist.StudentT, dist.InverseGamma)


@functools.lru_cache(maxsize=None)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1], computed on first use (not at import)."""
    return np.polynomial.legendre.leggauss(n)


@dataclasses.dataclass(frozen=True)
class Reparam(Estimator):
    """Pathwise (reparameterization) gradients through the distribution's own sampler."""

    def applies(self, fn) -> bool:
        return bool(fn.has_rsample)

    def why_not(self, fn) -> str:
        return "it has no reparameterized sampler"


@dataclasses.dataclass(frozen=True)
class LocalReparam(Estimator):
    """The local reparameterization trick (Kingma, Salimans & Welling 2015) for the weights of a
    dense layer: the layer samples its pre-activations, each data point (and particle) its own,
    from the Gaussian that its weights' mean-field posterior implies, x @ W ~ N(x @ m, x^2 @ s^2),
    instead of sharing one weight draw across the minibatch. The same expected ELBO gradient with
    less variance, and no per-weight noise on the forward pass.

    It applies to the `weight` (and `bias`) sites of the `eqx.nn.Linear` layers of
    `provi.nn.bayesian_module`, fitted with `guide="meanfield"` and `provi.ELBO` (or `provi.STL`);
    its convolutions (`eqx.nn.Conv`), whose output positions share weights, decorrelate data points
    by Flipout's sign flips (Wen et al. 2018) instead, which is unbiased too:
    `provi.fit(model, ..., guide="meanfield", estimators={"net.layers.0.weight": LocalReparam()})`.
    The weight draw still gives the prior and entropy terms. Objectives that need one joint weight
    draw per particle (IWAE, VIMCO, ...) would be biased by it and are refused, as are other
    families and NumPyro guides.

    On a sparse GP's whitened inducing values (`provi.gp`: `svgp.conditional(name, x)` or
    `svgp.condition(u, x, site=name)`), it integrates u out of the likelihood term: f(x) takes its
    marginal under q(u), mean A m and variance v + diag(A S A^T), as GPJax's bound does. There
    `guide="fullrank"` is allowed too when u is the model's only latent site.
    """

    def applies(self, fn) -> bool:
        return False  # never on a NumPyro guide's sample statement: a family guide's site only

    def why_not(self, fn) -> str:
        return ("LocalReparam needs the guide's moments in the model's dense layers: use it with guide='meanfield' "
                "on the weights of provi.nn.bayesian_module, not on a NumPyro guide's sample statement")


def _quadrature_cdf(d, z, lower):
    """CDF of univariate `d` at `z` by Gauss-Legendre quadrature of its density on [lower, z]."""
    nodes, weights = _gauss_legendre(QUADRATURE_NODES)
    half = (z - lower) / 2
    t = lower + half * (1 + nodes)
    t = t.reshape((-1,) + (1,) * jnp.ndim(z))
    return half * jnp.sum(weights.reshape(t.shape[:1] + (1,) * jnp.ndim(z)) * jnp.exp(d.log_prob(t)), axis=0)


@dataclasses.dataclass(frozen=True)
class ImplicitReparam(Estimator):
    """Implicit reparameterization gradients (Figurnov et al. 2018): dz/dθ = -(∂F/∂θ)(z) / q(z).

    Gamma, Chi2, Beta, Dirichlet, StudentT, InverseGamma: NumPyro's samplers (jax.random.gamma,
    beta, dirichlet) already differentiate implicitly, so the draw is used as it is. VonMises: the
    CDF is computed by quadrature of the density on [-π, z] (exact for periodic objectives). Other
    univariate continuous distributions with a NumPyro `cdf`: through that CDF.
    """

    def applies(self, fn) -> bool:
        b = base_distribution(fn)
        if isinstance(b, _IMPLICIT_NATIVE) or isinstance(b, dist.VonMises):
            return True
        return (not b.is_discrete) and b.event_shape == () and type(b).cdf is not Distribution.cdf

    def why_not(self, fn) -> str:
        return "it needs a continuous univariate distribution with a CDF, or a Gamma-based one"

    def draw(self, fn, value, key):
        b = base_distribution(fn)
        if isinstance(b, _IMPLICIT_NATIVE):
            return value, None
        z = sg(value)
        if isinstance(b, dist.VonMises):
            F = _quadrature_cdf(b, z, -jnp.pi)
        else:
            F = b.cdf(z)
        dens = sg(jnp.exp(b.log_prob(z)))
        return z - (F - sg(F)) / dens, None


def _gamma_rejection(key, alpha, boost: int):
    """A Gamma(alpha, 1) draw by Marsaglia-Tsang with shape augmentation (`boost` uniforms), the
    value differentiable in alpha through h(ε, alpha + boost), and the correction score
    log π(ε | alpha) = log Gamma(h; alpha + boost) + log h'(ε) (Naesseth et al. 2017)."""
    k1, k2 = jax.random.split(key)
    a = alpha + boost
    d = a - 1.0 / 3.0
    c = jnp.sqrt(9.0 * a - 3.0)
    z0 = jax.random.gamma(k1, sg(a))
    eps = sg(c * ((z0 / sg(d)) ** (1.0 / 3.0) - 1.0))
    v = 1.0 + eps / c
    h = d * v**3
    log_dh = jnp.log(3.0 * d / c) + 2.0 * jnp.log(v)
    score = dist.Gamma(a, 1.0).log_prob(h) + log_dh
    if boost:
        u = rand.uniform(k2, (boost,) + jnp.shape(alpha), minval=jnp.finfo(jnp.result_type(float)).tiny)
        i = jnp.arange(boost, dtype=h.dtype).reshape((boost,) + (1,) * jnp.ndim(alpha))
        h = h * jnp.exp(jnp.sum(jnp.log(u) / (alpha + i), axis=0))
    return h, score


@dataclasses.dataclass(frozen=True)
class RejectionReparam(Estimator):
    """Reparameterization through the Marsaglia-Tsang acceptance-rejection sampler with a score
    correction for the accepted-proposal density (Naesseth et al. 2017), for Gamma, Chi2, Beta and
    Dirichlet (the latter two as normalised Gammas). `boost` (shape augmentation) draws
    Gamma(α + boost) and multiplies by `boost` uniforms^(1/(α+i)); larger boost, smaller correction."""

    boost: int = 1

    def __post_init__(self):
        if not isinstance(self.boost, int) or self.boost < 0:
            raise ValueError(f"RejectionReparam: boost must be a non-negative integer, got {self.boost!r}")

    def applies(self, fn) -> bool:
        return isinstance(base_distribution(fn), (dist.Gamma, dist.Beta, dist.Dirichlet))

    def why_not(self, fn) -> str:
        return "it has a Gamma-based rejection sampler only for Gamma, Chi2, Beta and Dirichlet"

    def draw(self, fn, value, key):
        b = base_distribution(fn)
        shape = jnp.shape(value)
        key = jax.random.fold_in(key, 0x5EED)
        if isinstance(b, dist.Beta):
            ka, kb = jax.random.split(key)
            ga, sa = _gamma_rejection(ka, jnp.broadcast_to(b.concentration1, shape), self.boost)
            gb, sb = _gamma_rejection(kb, jnp.broadcast_to(b.concentration0, shape), self.boost)
            return ga / (ga + gb), jnp.sum(sa) + jnp.sum(sb)
        if isinstance(b, dist.Dirichlet):
            g, s = _gamma_rejection(key, jnp.broadcast_to(b.concentration, shape), self.boost)
            return g / jnp.sum(g, -1, keepdims=True), jnp.sum(s)
        g, s = _gamma_rejection(key, jnp.broadcast_to(b.concentration, shape), self.boost)  # Gamma, Chi2
        return g / b.rate, jnp.sum(s)

"""`GumbelSoftmax`: the Concrete relaxation of Bernoulli and one-hot categorical sites, and its
straight-through variant (biased)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from provi.core import rand
from provi.core.trace import base_distribution
from provi.distributions import OneHotCategorical
from provi.estimators.base import Estimator

__all__ = ["GumbelSoftmax"]

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class GumbelSoftmax(Estimator):
    """The Concrete / Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al. 2017) of a
    Bernoulli site, soft = sigmoid((logit + L) / temperature) with logistic noise L, or of a
    `provi.distributions.OneHotCategorical` site, soft = softmax((logits + G) / temperature) with
    Gumbel noise G.

    `straight_through=True` (the default): the program sees the hard draw (1[logit + L > 0], or
    the one-hot vector of argmax(logits + G): an exact draw from the site's distribution) and the
    gradient flows back through `soft` (Bengio et al. 2013). `straight_through=False`: the program
    sees `soft` itself, and the densities are evaluated there (NumPyro's BernoulliLogits and
    OneHotCategorical extend linearly off {0, 1}; for the Concrete densities themselves, write the
    site as `RelaxedOneHotCategorical` / `RelaxedBernoulli` and use `Reparam`).

    BIASED: the gradient is that of the relaxed objective (or, straight-through, not of any
    objective); the bias shrinks with the temperature while the variance grows. Flagged in
    `FitResult.diagnostics()`. `Categorical` sites hold integer indices, which cannot carry a
    gradient: write such a site as `OneHotCategorical` in the model and the guide to relax it.
    """

    temperature: float = 0.5
    straight_through: bool = True
    biased = True

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"GumbelSoftmax: temperature must be positive, got {self.temperature!r}")

    def applies(self, fn) -> bool:
        return isinstance(base_distribution(fn), (dist.BernoulliProbs, dist.BernoulliLogits, OneHotCategorical))

    def why_not(self, fn) -> str:
        if isinstance(base_distribution(fn), (dist.CategoricalProbs, dist.CategoricalLogits)):
            return (
                "a Categorical value is an integer index, which cannot carry a gradient; write the site as "
                "provi.distributions.OneHotCategorical in the model and the guide to relax it"
            )
        return "the relaxation is implemented for Bernoulli and provi.distributions.OneHotCategorical sites"

    def draw(self, fn, value, key):
        b = base_distribution(fn)
        shape = jnp.shape(value)
        if isinstance(b, OneHotCategorical):
            logits = jnp.broadcast_to(b.logits, shape)
            x = logits + rand.gumbel(jax.random.fold_in(key, 0x6B), shape, logits.dtype)
            soft = jax.nn.softmax(x / self.temperature, axis=-1)
            if self.straight_through:
                hard = jax.nn.one_hot(jnp.argmax(x, axis=-1), shape[-1], dtype=soft.dtype)
                return hard + (soft - sg(soft)), None
            return soft, None
        logits = jnp.broadcast_to(b.logits, shape)
        u = rand.uniform(jax.random.fold_in(key, 0x6B), shape, minval=1e-7, maxval=1 - 1e-7)
        x = logits + jnp.log(u) - jnp.log1p(-u)
        soft = jax.nn.sigmoid(x / self.temperature)
        if self.straight_through:
            hard = (x > 0).astype(soft.dtype)
            return hard + (soft - sg(soft)), None  # exactly `hard` forward
        return soft, None

    @property
    def name(self) -> str:
        return "GumbelSoftmax(straight-through)" if self.straight_through else "GumbelSoftmax(relaxed)"

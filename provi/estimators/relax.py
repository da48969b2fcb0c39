"""`GumbelSoftmax`: the binary Concrete relaxation and its straight-through variant (biased)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from provi.core.model import base_distribution
from provi.estimators.base import Estimator

__all__ = ["GumbelSoftmax"]

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class GumbelSoftmax(Estimator):
    """The Concrete / Gumbel-softmax relaxation of a Bernoulli site (Maddison et al. 2017; Jang et
    al. 2017) with logistic noise L: soft = sigmoid((logit + L) / temperature).

    `straight_through=True` (the default): the program sees the hard draw 1[logit + L > 0] (an
    exact Bernoulli draw) and the gradient flows back through `soft` (Bengio et al. 2013).
    `straight_through=False`: the program sees `soft` in (0, 1) itself; only for objectives whose
    densities accept relaxed values (NumPyro's Bernoulli log_prob is -inf off {0, 1}, so an
    unmodified model with a Bernoulli latent needs straight-through).

    BIASED: the gradient is that of the relaxed objective (or, straight-through, not of any
    objective); the bias shrinks with the temperature while the variance grows. Flagged in
    `FitResult.diagnostics()`. Categorical sites hold integer indices, which cannot be relaxed.
    """

    temperature: float = 0.5
    straight_through: bool = True
    biased = True

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"GumbelSoftmax: temperature must be positive, got {self.temperature!r}")

    def applies(self, fn) -> bool:
        return isinstance(base_distribution(fn), (dist.BernoulliProbs, dist.BernoulliLogits))

    def why_not(self, fn) -> str:
        return "the relaxation is implemented for Bernoulli sites only"

    def draw(self, fn, value, key):
        b = base_distribution(fn)
        shape = jnp.shape(value)
        logits = jnp.broadcast_to(b.logits, shape)
        u = jax.random.uniform(jax.random.fold_in(key, 0x6B), shape, minval=1e-7, maxval=1 - 1e-7)
        x = logits + jnp.log(u) - jnp.log1p(-u)
        soft = jax.nn.sigmoid(x / self.temperature)
        if self.straight_through:
            hard = (x > 0).astype(soft.dtype)
            return hard + (soft - sg(soft)), None  # exactly `hard` forward
        return soft, None

    @property
    def name(self) -> str:
        return "GumbelSoftmax(straight-through)" if self.straight_through else "GumbelSoftmax(relaxed)"

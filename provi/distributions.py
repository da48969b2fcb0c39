"""Distributions NumPyro lacks that discrete-latent models need: one-hot categoricals and their
Concrete relaxation (Maddison et al. 2017; Jang et al. 2017).

`OneHotCategorical` is a categorical variable written as a one-hot vector, so a model can use it
as a vector (`z @ means`) rather than an index; that is what lets the `GumbelSoftmax` estimator
pass a gradient through it, and `Enumerate` and `Reinforce` apply to it as to `Categorical`.
`RelaxedOneHotCategorical` is the Concrete distribution on the simplex, with a reparameterized
sampler and its exact density, for models written in relaxed form throughout.

`meanfield_mixture_log_prob` is the density of an equal-weight mixture of mean-field Gaussians
(`provi.guides.MeanFieldMixture`, and the `provi.SteinMixture` objective that moves it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import gammaln
from numpyro.distributions import constraints
from numpyro.distributions.kl import kl_divergence
from numpyro.distributions.util import promote_shapes
from numpyro.util import not_jax_tracer

from provi.core import rand

__all__ = ["OneHotCategorical", "RelaxedOneHotCategorical", "one_hot", "meanfield_mixture_log_prob"]


class _OneHot(constraints.Constraint):
    """Vectors with one entry 1 and the others 0 (event_dim 1)."""

    is_discrete = True
    event_dim = 1

    def __call__(self, x):
        return jnp.all((x == 0) | (x == 1), axis=-1) & (jnp.sum(x, axis=-1) == 1)

    def feasible_like(self, prototype):
        return jax.nn.one_hot(jnp.zeros(jnp.shape(prototype)[:-1], jnp.int32), jnp.shape(prototype)[-1], dtype=prototype.dtype)

    def tree_flatten(self):
        return (), ((), {})


one_hot = _OneHot()


def _logits(probs, logits, name):
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}: pass exactly one of `probs` or `logits`")
    if logits is None:
        logits = jnp.log(jnp.asarray(probs))
    logits = jnp.asarray(logits)
    if jnp.ndim(logits) < 1:
        raise ValueError(f"{name}: `probs`/`logits` must have a trailing axis of categories")
    return logits


class OneHotCategorical(dist.Distribution):
    """A categorical variable over K classes as a one-hot vector of length K.

    `log_prob(y) = sum_k y_k log p_k`: exact on one-hot vectors, and the linear extension that a
    relaxed estimator (`GumbelSoftmax(straight_through=False)`) evaluates off them. Give either
    `probs` (normalised over the last axis) or `logits` (normalised here).
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = one_hot
    has_enumerate_support = True
    pytree_data_fields = ("logits",)

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        self.logits = jax.nn.log_softmax(_logits(probs, logits, "OneHotCategorical"), axis=-1)
        shape = jnp.shape(self.logits)
        super().__init__(batch_shape=shape[:-1], event_shape=shape[-1:], validate_args=validate_args)

    @property
    def probs(self):
        return jnp.exp(self.logits)

    def sample(self, key, sample_shape=()):
        k = jax.random.categorical(key, self.logits, shape=tuple(sample_shape) + self.batch_shape)
        return jax.nn.one_hot(k, self.event_shape[0], dtype=self.logits.dtype)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value, logits = promote_shapes(value, self.logits)
        return jnp.sum(jnp.where(value == 0, 0.0, value * logits), axis=-1)

    def enumerate_support(self, expand=True):
        K = self.event_shape[0]
        values = jnp.eye(K, dtype=self.logits.dtype).reshape((K,) + (1,) * len(self.batch_shape) + (K,))
        if expand:
            values = jnp.broadcast_to(values, (K,) + self.batch_shape + (K,))
        return values

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def entropy(self):
        return -jnp.sum(self.probs * self.logits, axis=-1)


@kl_divergence.register(OneHotCategorical, OneHotCategorical)
def _kl_onehot(p, q):
    return jnp.sum(p.probs * (p.logits - q.logits), axis=-1)


class RelaxedOneHotCategorical(dist.Distribution):
    """The Concrete (Gumbel-softmax) distribution on the simplex, with temperature `temperature`:
    y = softmax((logits + G) / temperature), G iid standard Gumbel. Reparameterized; its density
    (with respect to Lebesgue measure on the first K - 1 coordinates) is that of Maddison et al.
    (2017), eq. 8. At low temperatures in float32 coordinates of y underflow to 0, where the
    density is clamped (Maddison et al. advise working with log y for that regime)."""

    arg_constraints = {"logits": constraints.real_vector, "temperature": constraints.positive}
    support = constraints.simplex
    reparametrized_params = ["logits", "temperature"]
    pytree_data_fields = ("logits", "temperature")

    def __init__(self, temperature, probs=None, logits=None, *, validate_args=None):
        logits = jax.nn.log_softmax(_logits(probs, logits, "RelaxedOneHotCategorical"), axis=-1)
        temperature = jnp.asarray(temperature, dtype=logits.dtype)
        if not_jax_tracer(temperature) and not bool(jnp.all(temperature > 0)):
            raise ValueError(f"RelaxedOneHotCategorical: temperature must be positive, got {temperature}")
        self.temperature, self.logits = temperature, logits
        shape = jnp.shape(logits)
        batch = jax.lax.broadcast_shapes(shape[:-1], jnp.shape(temperature))
        super().__init__(batch_shape=batch, event_shape=shape[-1:], validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        g = rand.gumbel(key, shape, dtype=self.logits.dtype)
        return jax.nn.softmax((self.logits + g) / jnp.expand_dims(self.temperature, -1), axis=-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        K = self.event_shape[0]
        tau = jnp.expand_dims(self.temperature, -1)
        log_y = jnp.log(jnp.clip(value, jnp.finfo(jnp.result_type(value)).tiny))
        t = self.logits - tau * log_y
        return (
            gammaln(K) + (K - 1) * jnp.log(self.temperature)
            + jnp.sum(t - log_y, axis=-1) - K * jax.nn.logsumexp(t, axis=-1)
        )

    @property
    def probs(self):
        return jnp.exp(self.logits)


def meanfield_mixture_log_prob(loc: jax.Array, log_scale: jax.Array, v: jax.Array) -> jax.Array:
    """log (1/K) sum_k N(v; loc_k, diag(exp(log_scale_k))^2) at points `v` (..., D), for
    components `loc`, `log_scale` (K, D): shape (...).

    >>> import jax.numpy as jnp
    >>> lp = meanfield_mixture_log_prob(jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.zeros((1,)))
    >>> round(float(lp), 4)  # two copies of N(0, 1) at 0
    -0.9189
    """
    eps = (v[..., None, :] - loc) * jnp.exp(-log_scale)  # (..., K, D)
    log_k = -0.5 * jnp.sum(eps**2, -1) - jnp.sum(log_scale, -1) - 0.5 * loc.shape[-1] * jnp.log(2 * jnp.pi)
    return jax.nn.logsumexp(log_k, -1) - jnp.log(loc.shape[0])

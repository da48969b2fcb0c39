"""Hierarchical variational inference: guides with auxiliary variables u, whose marginal
q(z) = int q(u) q(z | u) du is estimated by importance sampling (Sobolev & Vetrov 2019).

A hierarchical guide is a NumPyro guide that samples its auxiliary sites, marked
`infer={'is_auxiliary': True}`, before the model's latent sites and independently of them, e.g.

    def guide(z_obs):
        u = numpyro.sample("u", dist.Uniform(0, 1), infer={"is_auxiliary": True})
        numpyro.sample("x", dist.Normal(jnp.sqrt(z_obs) * jnp.cos(2 * jnp.pi * u), s1))

The reverse model r(u | z) of Ranganath et al. (2016) is q(u) itself, so the log marginal is
estimated from the draw's own u_0 and `m` fresh draws u_1..u_m ~ q(u):

    log q(z) <~ log 1/(m+1) sum_{j=0..m} q(z | u_j)

an upper bound in expectation for every m, tight as m -> infinity; m = 0 is HVI.
"""

import jax
import jax.numpy as jnp

from provi.core.vocab import density, objective, sim, split_auxiliary
from provi.objectives.util import log_mean_exp


def marginal_log_q(guide, z, log_q, *args, m: int) -> jax.Array:
    """Estimate log q(z) of the guide's draws `z` (with their auxiliary values u_0, and their joint
    log density `log_q`, shape (k,)) by importance sampling over `m` fresh auxiliary draws each."""
    latents, aux = split_auxiliary(guide, z)
    if not aux:
        return log_q  # no auxiliary variables: q(z) is exact
    names = tuple(aux)
    first = log_q - density(guide, aux, *args, sites=names)
    if m == 0:
        return first
    k = log_q.shape[0]
    inner, _ = sim(guide, *args, n=k * m)
    _, u = split_auxiliary(guide, inner)
    u = jax.tree.map(lambda x: x.reshape((k, m) + x.shape[1:]), u)
    z_km = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (k, m) + x.shape[1:]), latents)
    rest = density(guide, {**z_km, **u}, *args) - density(guide, u, *args, sites=names)
    return log_mean_exp(jnp.concatenate([first[:, None], rest], axis=1))


def _log_weights(model, guide, args, k, m):
    z, log_q = sim(guide, *args, n=k)
    latents, _ = split_auxiliary(guide, z)
    return density(model, latents, *args) - marginal_log_q(guide, z, log_q, *args, m=m)


@objective
def HVI(model, guide, *args, num_particles: int = 1):
    """Hierarchical VI (Ranganath et al. 2016) with reverse model r(u | z) = q(u):
    E[log p(x, z) - log q(z | u)], averaged over `num_particles` draws (z, u) ~ q."""
    return jnp.mean(_log_weights(model, guide, args, num_particles, 0))


@objective
def IWHVI(model, guide, *args, k: int = 1, m: int = 5):
    """Importance-weighted HVI (Sobolev & Vetrov 2019): the ELBO with log q(z) estimated from `m`
    extra auxiliary draws per particle, averaged over `k` particles."""
    return jnp.mean(_log_weights(model, guide, args, k, m))


@objective
def DIWHVI(model, guide, *args, k: int = 5, m: int = 5):
    """Doubly importance-weighted HVI (Sobolev & Vetrov 2019): the IWAE bound over `k` particles,
    each with log q(z) estimated from `m` extra auxiliary draws."""
    return log_mean_exp(_log_weights(model, guide, args, k, m))

"""Hierarchical variational inference: guides with auxiliary variables u, whose marginal
q(z) = int q(u) q(z | u) du is estimated by importance sampling (Sobolev & Vetrov 2019).

A hierarchical guide is a NumPyro guide that samples its auxiliary sites, marked
`infer={'is_auxiliary': True}`, before the model's latent sites and independently of them, e.g.

    def guide(z_obs):
        u = numpyro.sample("u", dist.Uniform(0, 1), infer={"is_auxiliary": True})
        numpyro.sample("x", dist.Normal(jnp.sqrt(z_obs) * jnp.cos(2 * jnp.pi * u), s1))

The log marginal is estimated from the draw's own u_0 and `m` fresh draws u_1..u_m ~ r(u | z):

    log q(z) <~ log 1/(m+1) sum_{j=0..m} q(u_j, z) / r(u_j | z)

an upper bound in expectation for every m, tight as m -> infinity; m = 0 is HVI (Ranganath et
al. 2016). The reverse model r is, by default, q(u) itself (then each term is q(z | u_j)); or
`reverse=fn`, a NumPyro program `fn(z, *args, **kwargs)` that samples the auxiliary sites given a
dict `z` of the latent sites' values (one particle), e.g.

    def reverse(z, z_obs):
        numpyro.sample("u", dist.Normal(numpyro.param("r_slope", 0.0) * z["x"], 1.0))

Its sites must be reparameterizable; its `numpyro.param` sites take the guide's parameters of the
same name, so declare the ones to learn in the guide (others keep their initial values).
"""

import jax
import jax.numpy as jnp

from provi.core.objective import objective
from provi.core.vocab import density, density_given, sim, sim_given, split_auxiliary
from provi.objectives.util import log_mean_exp


def marginal_log_q(guide, z, log_q, *args, m: int, reverse=None) -> jax.Array:
    """Estimate log q(z) of the guide's draws `z` (with their auxiliary values u_0, and their joint
    log density `log_q`, shape (k,)) by importance sampling over `m` auxiliary draws each from the
    reverse model (default q(u))."""
    latents, aux = split_auxiliary(guide, z)
    if not aux:
        return log_q  # no auxiliary variables: q(z) is exact
    names = tuple(aux)
    if reverse is None:
        first = log_q - density(guide, aux, *args, sites=names)
    else:
        first = log_q - density_given(guide, reverse, aux, latents, *args)
    if m == 0:
        return first
    k = log_q.shape[0]
    z_km = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (k, m) + x.shape[1:]), latents)
    if reverse is None:
        inner, _ = sim(guide, *args, n=k * m)
        _, u = split_auxiliary(guide, inner)
        u = jax.tree.map(lambda x: x.reshape((k, m) + x.shape[1:]), u)
        log_r = density(guide, u, *args, sites=names)
    else:
        u, log_r = sim_given(guide, reverse, latents, *args, n=m)
    rest = density(guide, {**z_km, **u}, *args) - log_r
    return log_mean_exp(jnp.concatenate([first[:, None], rest], axis=1))


def _log_weights(model, guide, args, k, m, reverse):
    z, log_q = sim(guide, *args, n=k)
    latents, _ = split_auxiliary(guide, z)
    return density(model, latents, *args) - marginal_log_q(guide, z, log_q, *args, m=m, reverse=reverse)


@objective
def HVI(model, guide, *args, num_particles: int = 1, reverse=None):
    """Hierarchical VI (Ranganath et al. 2016): E[log p(x, z) + log r(u | z) - log q(u, z)],
    averaged over `num_particles` draws (u, z) ~ q; `reverse` is r (default q(u))."""
    return jnp.mean(_log_weights(model, guide, args, num_particles, 0, reverse))


@objective
def IWHVI(model, guide, *args, k: int = 1, m: int = 5, reverse=None):
    """Importance-weighted HVI (Sobolev & Vetrov 2019): the ELBO with log q(z) estimated from `m`
    extra auxiliary draws per particle from `reverse` (default q(u)), averaged over `k` particles."""
    return jnp.mean(_log_weights(model, guide, args, k, m, reverse))


@objective
def DIWHVI(model, guide, *args, k: int = 5, m: int = 5, reverse=None):
    """Doubly importance-weighted HVI (Sobolev & Vetrov 2019): the IWAE bound over `k` particles,
    each with log q(z) estimated from `m` extra auxiliary draws from `reverse` (default q(u))."""
    return log_mean_exp(_log_weights(model, guide, args, k, m, reverse))

"""The evidence lower bound."""

import jax.numpy as jnp

from provi.core.vocab import density, objective, sim


@objective
def ELBO(model, guide, *args, num_particles: int = 1):
    """E_q[log p(x, z) - log q(z)], averaged over `num_particles` draws."""
    z, log_q = sim(guide, *args, n=num_particles)
    return jnp.mean(density(model, z, *args) - log_q)

"""The evidence lower bound, and its sticking-the-landing (path derivative) form."""

import jax.numpy as jnp

from provi.core.pointwise import pointwise_density
from provi.core.objective import objective
from provi.core.vocab import density, detach, kl, particle_mean, sim


@objective
def ELBO(model, guide, *args, num_particles: int = 1, analytic_kl: bool = False, plate: str | None = None):
    """E_q[log p(x, z) - log q(z)], averaged over `num_particles` draws.

    With `analytic_kl=True`, each latent site whose guide distribution and model prior have a
    registered `numpyro.distributions.kl.kl_divergence` contributes -KL(q_s || p_s) in closed form
    instead of its Monte Carlo log ratio (NumPyro guides only; other sites stay Monte Carlo).

    `plate` (the name of a data plate; NumPyro guides): score-function sites inside it score each
    element's draw against that element's terms (plus the terms outside the plate) instead of the
    whole particle's: the same value and expected gradient, with far less variance when the plate
    is large (as NumPyro's and Pyro's TraceGraph_ELBO do). Sites with a `RunningAverage` or
    `Learned` baseline keep the particle's whole term. `Enumerate` sites inside it (one coordinate
    per element) re-run the objective once per support value instead of once per value and
    element, with the same gradient (`provi.estimators.surrogate.localise`).
    """
    z, log_q = sim(guide, *args, n=num_particles)
    log_w = density(model, z, *args) - log_q
    if analytic_kl:
        kl_z, sites = kl(guide, model, z, *args)
        if sites:
            log_w = log_w - density(model, z, *args, sites=sites) + density(guide, z, *args, sites=sites) - kl_z
    if plate is not None:
        p, q = pointwise_density(model, z, plate=plate), pointwise_density(guide, z, plate=plate)
        terms = p.scale * (p.local - q.local)  # (n, B): each element's own terms
        return particle_mean(guide, terms, values=z, plate=plate, rest=log_w - jnp.sum(terms, -1))
    return particle_mean(guide, log_w)  # per-particle learning signals for score-function sites


@objective
def STL(model, guide, *args, num_particles: int = 1):
    """The ELBO with sticking-the-landing gradients (Roeder et al. 2017): log q is scored with the
    guide's parameters detached, so only the draws' path carries the gradient; its variance
    vanishes as the guide reaches the posterior. Works with any reparameterized guide (families,
    flows, NumPyro guides)."""
    z, _ = sim(guide, *args, n=num_particles)
    return jnp.mean(density(model, z, *args) - density(detach(guide), z, *args))

"""Importance-weighted bounds: IWAE and its gradient estimators (DReG, VIMCO) and variants
(PIWAE, MIWAE, CIWAE of Rainforth et al. 2018)."""

import jax
import jax.numpy as jnp

from provi.core.vocab import claim_scores, density, detach, objective, replace_grad, sim
from provi.objectives.util import leave_one_out, log_mean_exp, normalised_weights


@objective
def IWAE(model, guide, *args, k: int = 5):
    """The importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i) (Burda et al. 2016)."""
    z, log_q = sim(guide, *args, n=k)
    return log_mean_exp(density(model, z, *args) - log_q)


@objective
def DReG(model, guide, *args, k: int = 5):
    """The IWAE bound with doubly reparameterized gradients (Tucker et al. 2019): the guide's
    gradient is sum_i w_i^2 d log w_i / dz_i dz_i/dphi (log q with detached parameters); the model's
    is IWAE's, sum_i w_i d log p(x, z_i) / dtheta. Needs a reparameterized guide."""
    z, _ = sim(guide, *args, n=k)
    log_p = density(model, z, *args)
    log_w = log_p - density(detach(guide), z, *args)
    w = normalised_weights(log_w)
    model_part = jnp.sum((w - w**2) * density(model, detach(z), *args))
    return replace_grad(log_mean_exp(log_w), jnp.sum(w**2 * log_w) + model_part)


@objective
def VIMCO(model, guide, *args, k: int = 5):
    """The IWAE bound with VIMCO's score-function gradient for non-reparameterized guide sites
    (Mnih & Rezende 2016): each particle's score is weighted by the bound minus a leave-one-out
    baseline; reparameterized sites keep their path gradient."""
    z, log_q = sim(guide, *args, n=k)
    scores = claim_scores(guide)
    log_w = density(model, z, *args) - log_q
    bound = log_mean_exp(log_w)
    signal = jax.lax.stop_gradient(bound - leave_one_out(log_w))
    return bound + jnp.sum(signal * (scores - jax.lax.stop_gradient(scores)))


@objective
def MIWAE(model, guide, *args, k: int = 5, m: int = 1):
    """The mean of `m` independent IWAE bounds of `k` particles each (Rainforth et al. 2018)."""
    z, log_q = sim(guide, *args, n=k * m)
    log_w = density(model, z, *args) - log_q
    return jnp.mean(log_mean_exp(log_w.reshape(m, k)))


@objective
def PIWAE(model, guide, *args, k: int = 5, m: int = 1):
    """Partially importance weighted (Rainforth et al. 2018): the model is trained on the IWAE bound
    of all k*m draws (the value reported), the guide on MIWAE(k, m) of the same draws. Needs a
    reparameterized guide."""
    z, log_q = sim(guide, *args, n=k * m)
    log_w_model = density(model, detach(z), *args) - detach(log_q)
    log_w_guide = density(detach(model), z, *args) - log_q
    guide_part = jnp.mean(log_mean_exp(log_w_guide.reshape(m, k)))
    return replace_grad(log_mean_exp(log_w_model), log_mean_exp(log_w_model) + guide_part)


@objective
def CIWAE(model, guide, *args, k: int = 5, beta: float = 0.5):
    """beta * ELBO + (1 - beta) * IWAE, both over the same `k` draws (Rainforth et al. 2018)."""
    z, log_q = sim(guide, *args, n=k)
    log_w = density(model, z, *args) - log_q
    return beta * jnp.mean(log_w) + (1 - beta) * log_mean_exp(log_w)

"""Objectives from other divergences: Renyi alpha, chi-square (CUBO), forward chi-square VIS."""

import jax.numpy as jnp

from provi.core.objective import objective
from provi.core.vocab import claim_scores, density, detach, replace_grad, sim
from provi.objectives.util import log_mean_exp, normalised_weights


@objective
def Renyi(model, guide, *args, alpha: float = 0.5, k: int = 5):
    """The variational Renyi bound (Li & Turner 2016): 1/(1-alpha) log (1/k) sum_i w_i^(1-alpha),
    w_i = p(x, z_i) / q(z_i). alpha=0 is IWAE, alpha -> 1 the ELBO (alpha=1 gives the ELBO)."""
    z, log_q = sim(guide, *args, n=k)
    log_w = density(model, z, *args) - log_q
    if alpha == 1:
        return jnp.mean(log_w)
    return log_mean_exp((1 - alpha) * log_w) / (1 - alpha)


@objective
def CUBO(model, guide, *args, n: int = 2, k: int = 5):
    """MINUS the chi upper bound (Dieng et al. 2017): -(1/n) log (1/k) sum_i w_i^n.

    CUBO_n = (1/n) log E_q[w^n] >= log p(x); objectives are maximised, so this returns -CUBO_n, an
    estimate of a lower bound on -log p(x) (equal to -log p(x) when q is the posterior).
    """
    z, log_q = sim(guide, *args, n=k)
    return -log_mean_exp(n * (density(model, z, *args) - log_q)) / n


@objective
def ChiSquareVIS(model, guide, *args, k: int = 5):
    """Forward chi-square variational importance sampling: the guide minimises chi^2(p || q), the
    variance of the importance weights, so that it makes a good proposal; the model is trained by
    importance-weighted maximum likelihood.

    Value: the IWAE estimate of log p(x). Gradients (draws cut from the gradient, any guide):
    the guide's is -(1/2) grad log E_q[w^2] = (1/2) sum_i v_i grad log q(z_i), v = normalised w^2;
    the model's is sum_i w_i grad log p(x, z_i) with w normalised w.
    """
    z, _ = sim(guide, *args, n=k)
    claim_scores(guide)  # this gradient needs no score surrogate: drop the ledger's terms
    z = detach(z)
    log_p, log_q = density(model, z, *args), density(guide, z, *args)
    log_w = log_p - log_q
    surrogate = jnp.sum(normalised_weights(log_w) * log_p) + 0.5 * jnp.sum(normalised_weights(2 * log_w) * log_q)
    return replace_grad(log_mean_exp(log_w), surrogate)

"""Reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019)."""

import jax.numpy as jnp

from provi.core.vocab import claim_scores, density, detach, objective, replace_grad, sim
from provi.objectives.util import log_mean_exp, normalised_weights


@objective
def RWS(model, guide, *args, k: int = 5):
    """Reweighted wake-sleep with the wake-phase guide update.

    Value: the IWAE estimate of log p(x). Gradients, from `k` draws cut from the gradient and their
    normalised weights w: wake-p for the model, sum_i w_i grad log p(x, z_i); wake-q for the guide,
    sum_i w_i grad log q(z_i) (a step towards minimising KL(p(z | x) || q)). Works for any guide,
    discrete sites included, with no score-function surrogate. (The sleep-phase guide update,
    which needs draws of data from the model, is not included.)
    """
    z, _ = sim(guide, *args, n=k)
    claim_scores(guide)  # wake-q needs no score surrogate: drop the ledger's terms
    z = detach(z)
    log_p, log_q = density(model, z, *args), density(guide, z, *args)
    log_w = log_p - log_q
    return replace_grad(log_mean_exp(log_w), jnp.sum(normalised_weights(log_w) * (log_p + log_q)))

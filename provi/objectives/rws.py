"""Reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019)."""

import jax
import jax.numpy as jnp

from provi.core.objective import objective
from provi.core.vocab import claim_scores, density, detach, replace_grad, sim, with_observed
from provi.objectives.util import log_mean_exp, normalised_weights


@objective
def RWS(model, guide, *args, k: int = 5, wake_q: bool = True, sleep: int = 0, data: dict | None = None):
    """Reweighted wake-sleep.

    Value: the IWAE estimate of log p(x) from `k` guide draws. Gradients, from those draws cut
    from the gradient and their normalised weights w: wake-p for the model, sum_i w_i grad log
    p(x, z_i); wake-q for the guide (`wake_q=True`), sum_i w_i grad log q(z_i | x), a step towards
    minimising KL(p(z | x) || q). `sleep=m > 0` adds the sleep-phase guide update from `m` draws
    (z_j, x_j) of the model's joint (data simulated): (1/m) sum_j grad log q(z_j | x_j), a step
    towards minimising E_p(x) KL(p(z | x) || q(z | x)) (amortised guides learn from data the model
    imagines). `data` tells the sleep phase which argument holds each observed site's data when
    the model does not observe its argument as it is (see `provi.with_observed`). Works for any
    guide, discrete sites included, with no score-function surrogate.
    """
    z, _ = sim(guide, *args, n=k)
    claim_scores(guide)  # RWS needs no score surrogate: drop the ledger's terms
    z = detach(z)
    log_p, log_q = density(model, z, *args), density(guide, z, *args)
    log_w = log_p - log_q
    surrogate = jnp.sum(normalised_weights(log_w) * (log_p + (log_q if wake_q else detach(log_q))))
    if sleep:
        dream, _ = sim(model, *args, n=sleep)
        dream = detach(dream)

        def sleep_q(draw):
            a, kw = with_observed(model, draw, *args, data=data)
            return density(guide, {s: draw[s] for s in z}, *a, **kw)

        surrogate = surrogate + jnp.mean(jax.vmap(sleep_q)(dream))
    return replace_grad(log_mean_exp(log_w), surrogate)

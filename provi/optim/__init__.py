"""Optimisers that are variational methods in their own right.

Floor 3 (a sibling of `provi.guides`, `provi.estimators` and `provi.objectives`): optax-style
transformations that import jax, optax and floor 1 only.

- `ivon(learning_rate, ess, ...)`: improved variational online Newton (Shen et al. 2024), a
  mean-field Gaussian posterior over a network's weights at the cost of Adam; `ivon_sample`,
  `ivon_value_and_grad` and `ivon_posterior` draw weights, estimate gradients and Hessians at the
  draws, and give the learned Gaussian.
- `fb_gvi(step_size)` and `bw_sgd(step_size)`: Gaussian VI as a Wasserstein gradient flow
  (forward-backward, Diao et al. 2023; Bures-Wasserstein SGD, Lambert et al. 2022) for
  `provi.fit(..., guide="fullrank" or "meanfield", optimizer=provi.optim.fb_gvi(0.1))`.
- `natgrad(step_size, others=None)`: natural-gradient Gaussian VI (the Bayesian learning rule,
  Khan & Rue 2023, with the Hessian estimate's positive part) for the same families;
  `others` (an optax transformation) moves the model's `numpyro.param` sites, as it does for
  `fb_gvi` and `bw_sgd`.
"""

from provi.optim.online_newton import (
    IVON,
    IVONGrads,
    IVONPosterior,
    IVONState,
    ivon,
    ivon_posterior,
    ivon_sample,
    ivon_value_and_grad,
)

from provi.optim.natural import natgrad, natural_precision
from provi.optim.wasserstein import WassersteinState, bw_sgd, fb_gvi, hessian_from_tril, jko_entropy

__all__ = [
    "fb_gvi",
    "natgrad",
    "natural_precision",
    "bw_sgd",
    "jko_entropy",
    "hessian_from_tril",
    "WassersteinState",
    "ivon", "IVON", "IVONState", "IVONGrads", "IVONPosterior", "ivon_sample", "ivon_value_and_grad", "ivon_posterior"]

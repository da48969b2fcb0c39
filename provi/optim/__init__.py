"""Optimisers that are variational methods in their own right.

Floor 3 (a sibling of `provi.guides`, `provi.estimators` and `provi.objectives`): optax-style
transformations that import jax, optax and floor 1 only.

- `ivon(learning_rate, ess, ...)`: improved variational online Newton (Shen et al. 2024), a
  mean-field Gaussian posterior over a network's weights at the cost of Adam; `ivon_sample`,
  `ivon_value_and_grad` and `ivon_posterior` draw weights, estimate gradients and Hessians at the
  draws, and give the learned Gaussian.
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

__all__ = ["ivon", "IVON", "IVONState", "IVONGrads", "IVONPosterior", "ivon_sample", "ivon_value_and_grad", "ivon_posterior"]

"""Bayesian deep learning: judging predictive uncertainty, and variational Bayesian last layers.

Floor 3 (a sibling of `provi.optim`): imports jax, equinox and floor 1 only; matplotlib is
imported when a plot is first drawn.

- `provi.bdl.metrics`: predictive averaging over posterior samples; accuracy, negative
  log-likelihood, expected calibration error, Brier score, out-of-distribution AUROC from the
  predictive entropy, Gaussian regression RMSE and NLL.
- `provi.bdl.vbll`: variational Bayesian last layers (Harrison et al. 2024) for regression and
  classification, with their deterministic training bound and predictive distribution.
- `provi.bdl.coreset`: random and greedy k-centre coresets for variational continual learning,
  and splitting and joining tasks' data.
"""

from provi.bdl import coreset, metrics, vbll
from provi.bdl.metrics import accuracy, brier, ece, gaussian_nll, gaussian_predictive, log_predictive, nll, ood_auroc, predictive_entropy, rmse
from provi.bdl.plots import reliability_diagram

__all__ = [
    "coreset",
    "metrics",
    "vbll",
    "log_predictive",
    "gaussian_predictive",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "predictive_entropy",
    "ood_auroc",
    "rmse",
    "gaussian_nll",
    "reliability_diagram",
]

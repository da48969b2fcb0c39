"""provi: programmable variational inference for NumPyro models."""

from provi import distributions, estimators, guides, nn, objectives
from provi.core.vocab import Objective, claim_scores, particle_mean, density, detach, kl, objective, replace_grad, sim, split_auxiliary, with_observed
from provi.fit import fit
from provi.objectives import (
    CIWAE,
    CUBO,
    DIWHVI,
    ELBO,
    HVI,
    IWAE,
    IWHVI,
    MIWAE,
    PIWAE,
    RWS,
    STL,
    VIMCO,
    ChiSquareVIS,
    DReG,
    Renyi,
    log_mean_exp,
)
from provi.persist import load
from provi.result import FitResult

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "load",
    "sim",
    "density",
    "with_observed",
    "detach",
    "replace_grad",
    "claim_scores",
    "particle_mean",
    "kl",
    "split_auxiliary",
    "log_mean_exp",
    "objective",
    "Objective",
    "ELBO",
    "STL",
    "IWAE",
    "DReG",
    "VIMCO",
    "RWS",
    "Renyi",
    "CUBO",
    "ChiSquareVIS",
    "PIWAE",
    "MIWAE",
    "CIWAE",
    "HVI",
    "IWHVI",
    "DIWHVI",
    "guides",
    "estimators",
    "distributions",
    "objectives",
    "nn",
]

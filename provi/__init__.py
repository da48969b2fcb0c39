"""provi: programmable variational inference for NumPyro models."""

from provi import estimators, guides, nn, objectives
from provi.core.vocab import Objective, density, detach, objective, sim
from provi.fit import fit
from provi.objectives import ELBO
from provi.persist import load
from provi.result import FitResult

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "load",
    "sim",
    "density",
    "detach",
    "objective",
    "Objective",
    "ELBO",
    "guides",
    "estimators",
    "objectives",
    "nn",
]

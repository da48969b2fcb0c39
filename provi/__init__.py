"""provi: programmable variational inference for NumPyro models.

The package is built in floors; a module imports only from a lower floor or its own folder (an
import-linter contract in `pyproject.toml` keeps it so):

1. `errors`, `defaults`, `persist`, `examples`
2. `core` (NumPyro plumbing, the program interface, the objective vocabulary)
3. `distributions` | `kernels`; then `guides` | `estimators` | `objectives` | `optim` | `bdl` | `gp` (siblings)
4. `programs` (the concrete model and guide programs)
5. `engine` (loss, the public step API, start, compiled loop, driver, checkpoints, sharding)
6. `diagnostics` (PSIS, verdicts, collapse, evaluation)
7. `result` | `nn`
8. `auto` | `saved` (a saved fit loaded back)
9. `fit`
10. `report`, then `cli`
"""

from provi import distributions, estimators, guides, kernels, objectives
from provi.core.objective import Objective, objective
from provi.core.running import running_average
from provi.core.vocab import claim_scores, components, density, detach, gaussian, kl, particle_mean, particles, place, random_key, replace_grad, sim, split_auxiliary, step_count, with_observed
from provi.engine import Batches, Setup, StepInfo, VIState, setup
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
    SVGD,
    PriceELBO,
    SteinMixture,
    VIMCO,
    ChiSquareVIS,
    DReG,
    Renyi,
    log_mean_exp,
)
from provi.result import FitResult
from provi.saved import load

__version__ = "0.1.0"

__all__ = [
    "fit",
    "setup",
    "Setup",
    "VIState",
    "StepInfo",
    "Batches",
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
    "particles",
    "components",
    "gaussian",
    "place",
    "step_count",
    "random_key",
    "running_average",
    "log_mean_exp",
    "objective",
    "Objective",
    "ELBO",
    "STL",
    "PriceELBO",
    "IWAE",
    "DReG",
    "VIMCO",
    "RWS",
    "SVGD",
    "SteinMixture",
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
    "gp",
    "kernels",
    "estimators",
    "distributions",
    "objectives",
    "nn",
    "optim",
    "bdl",
]


_LAZY = ("gp", "bdl", "nn", "optim")  # imported when first used: `import provi` stays light


def __getattr__(name: str):
    """`provi.gp`, `provi.bdl`, `provi.nn` and `provi.optim` are imported when first used: they
    bring tinygp and the Bayesian-deep-learning and optimiser code, which `provi.fit` does not need."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"provi.{name}")
    raise AttributeError(f"module 'provi' has no attribute {name!r}")

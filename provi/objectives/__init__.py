"""Built-in variational objectives, each one short function written with provi's public
vocabulary (`provi.sim`, `provi.density`, `provi.detach`, ...). All are maximised. `SVGD` moves
a particle guide (`provi.guides.Particles`) and takes its kernel from `provi.kernels`.

Floor 3 (a sibling of `provi.guides` and `provi.estimators`): objectives import only the core's
vocabulary, `provi.kernels` and floor 1, exactly what a user's own objective can use.
"""

from provi.objectives.divergences import CUBO, ChiSquareVIS, Renyi
from provi.objectives.elbo import ELBO, STL
from provi.objectives.hierarchical import DIWHVI, HVI, IWHVI, marginal_log_q
from provi.objectives.price import PriceELBO
from provi.objectives.iwae import CIWAE, IWAE, MIWAE, PIWAE, VIMCO, DReG
from provi.objectives.rws import RWS
from provi.objectives.stein import SVGD, SteinMixture, log_target
from provi.objectives.util import leave_one_out, log_mean_exp, normalised_weights

__all__ = [
    "ELBO",
    "STL",
    "PriceELBO",
    "IWAE",
    "DReG",
    "VIMCO",
    "RWS",
    "SVGD",
    "SteinMixture",
    "log_target",
    "Renyi",
    "CUBO",
    "ChiSquareVIS",
    "PIWAE",
    "MIWAE",
    "CIWAE",
    "HVI",
    "IWHVI",
    "DIWHVI",
    "REGISTRY",
    "log_mean_exp",
    "normalised_weights",
    "leave_one_out",
    "marginal_log_q",
]

# Every built-in objective, in a sensible default configuration (the contract test runs them all).
REGISTRY = (
    ELBO(),
    ELBO(num_particles=3, analytic_kl=True),
    STL(num_particles=2),
    IWAE(k=4),
    DReG(k=4),
    VIMCO(k=4),
    RWS(k=4),
    RWS(k=3, wake_q=False, sleep=3),
    Renyi(alpha=0.5, k=4),
    CUBO(n=2, k=4),
    ChiSquareVIS(k=4),
    PIWAE(k=2, m=2),
    MIWAE(k=2, m=2),
    CIWAE(k=4, beta=0.5),
    HVI(num_particles=2),
    IWHVI(k=2, m=3),
    DIWHVI(k=2, m=3),
)

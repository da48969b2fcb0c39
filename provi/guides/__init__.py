"""Variational families: distributions on the flat unconstrained latent vector.

String shortcuts for `provi.fit(guide=...)`: "delta", "meanfield", "fullrank", "lowrank",
"laplace", "flow" (RealNVP), "realnvp", "iaf", "nsf", "planar", "radial", "mixture", "studentt", "auto". A
family object (`MeanField()`, `LowRank(rank=5)`, ...) or a NumPyro guide function with
`numpyro.param` sites works too.

Floor 3 (a sibling of `provi.estimators` and `provi.objectives`): families know nothing about
models; they import only the core, `provi.distributions` and floor 1. `provi.programs.FamilyGuide` places a family in a
model's unconstrained space.
"""

from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.flows import IAF, Flow, NeuralSplineFlow, Planar, Radial, RealNVP
from provi.guides.mixture import GaussianMixture, MeanFieldMixture, ModeMixture
from provi.guides.particles import Particles
from provi.guides.student import StudentT

__all__ = ["Family", "Delta", "MeanField", "FullRank", "LowRank", "Laplace",
    "Flow", "RealNVP", "IAF", "NeuralSplineFlow", "Planar", "Radial", "GaussianMixture", "MeanFieldMixture", "ModeMixture", "Particles", "StudentT"]


"""Variational families and guide programs.

String shortcuts for `provi.fit(guide=...)`: "delta", "meanfield", "fullrank", "lowrank",
"laplace", "flow" (RealNVP), "realnvp", "iaf", "nsf", "planar",
"radial", "mixture", "auto". A family object (`MeanField()`, `LowRank(rank=5)`, ...) or a NumPyro guide
function with `numpyro.param` sites works too.
"""

from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.flows import IAF, Flow, NeuralSplineFlow, Planar, Radial, RealNVP
from provi.guides.mixture import GaussianMixture
from provi.guides.program import FamilyGuide, ModelProgram, NumPyroGuide

__all__ = ["Family", "Delta", "MeanField", "FullRank", "LowRank", "Laplace",
    "Flow", "RealNVP", "IAF", "NeuralSplineFlow", "Planar", "Radial", "GaussianMixture", "FamilyGuide", "ModelProgram", "NumPyroGuide"]


"""Variational families and guide programs.

String shortcuts for `provi.fit(guide=...)`: "delta", "meanfield", "fullrank", "lowrank",
"laplace", "auto". A family object (`MeanField()`, `LowRank(rank=5)`, ...) or a NumPyro guide
function with `numpyro.param` sites works too.
"""

from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.program import FamilyGuide, ModelProgram, NumPyroGuide

__all__ = ["Family", "Delta", "MeanField", "FullRank", "LowRank", "Laplace", "FamilyGuide", "ModelProgram", "NumPyroGuide"]


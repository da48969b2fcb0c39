"""Floor 4: the concrete programs objectives run, and the table that builds them.

`ModelProgram` (the model's log joint), `FamilyGuide` (a `provi.guides` family in the model's
unconstrained space) and `NumPyroGuide` (a user's guide function, each site under its
`provi.estimators` estimator) implement the interface declared in `provi.core.program`;
`make_guide` turns `provi.fit`'s `guide` argument into one.

May import: floors 1-3 (core, guides, estimators, objectives, distributions).
"""

from provi.programs.family import FamilyGuide
from provi.programs.make import GUIDES, family_for, guide_from_spec, make_guide
from provi.programs.model import ModelProgram
from provi.programs.numpyro_guide import NumPyroGuide

__all__ = ["ModelProgram", "FamilyGuide", "NumPyroGuide", "GUIDES", "family_for", "make_guide", "guide_from_spec"]

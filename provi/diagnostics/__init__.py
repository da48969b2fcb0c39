"""Floor 6: diagnostics of a fit, from arrays and programs (never a `FitResult`, which is above).

`psis` (Pareto-smoothed importance sampling: k-hat and importance-weighted moments), `verdicts` (`Diagnostics`,
`diagnose`: what the numbers mean, in words), `collapse` (posterior collapse of amortized
Gaussian latents), `evaluation` (an objective's value at fitted parameters, held-out
log-likelihoods), `particles` (bandwidth, spread and Stein discrepancy of a particle fit).

May import: floors 1-5.
"""

from provi.diagnostics.collapse import Collapse, SiteCollapse, posterior_collapse
from provi.diagnostics.evaluation import evaluate, log_likelihood
from provi.diagnostics.particles import ParticleDiagnostics, particle_diagnostics
from provi.diagnostics.psis import khat_se, khat_usable, khat_verdict, psis, weighted_moments
from provi.diagnostics.verdicts import Diagnostics, diagnose

__all__ = ["Diagnostics", "diagnose", "psis", "khat_se", "khat_usable", "khat_verdict", "weighted_moments",
           "Collapse", "SiteCollapse", "posterior_collapse", "evaluate", "log_likelihood",
           "ParticleDiagnostics", "particle_diagnostics"]

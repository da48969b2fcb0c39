"""Floor 5: the engine that runs a fit.

`layout` (model arguments as array leaves and a static part), `compile` (the compiled-program
caches), `loss` (an objective evaluation turned into a surrogate loss), `step` (the public step
API: `provi.setup` -> `init`/`step`, and the update every fit runs), `start` (the Laplace start and
other starting points), `runner` (a compiled chunk of steps), `schedule` (chunk sizes,
convergence, averaging, `StopInfo`), `driver` (the loop over chunks), `nonfinite`, `checkpoint`,
`parallel` (data sharding), `data` (streamed minibatches), `progress`.

May import: floors 1-4 (core, guides, estimators, objectives, distributions, programs).
"""

from provi.engine.data import Batches
from provi.engine.step import Setup, StepInfo, VIState, loop_keys, seed_keys, setup

__all__ = ["Setup", "VIState", "StepInfo", "setup", "loop_keys", "seed_keys", "Batches"]

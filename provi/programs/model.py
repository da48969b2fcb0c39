"""`ModelProgram`: the model's log joint density, with its `numpyro.param` sites as parameters."""

from __future__ import annotations

import dataclasses
from typing import Callable, final

from provi.core.batching import batch_ndim, vectorise
from provi.core.model import ModelInfo
from provi.core.plates import ReplayPlates
from provi.core.program import AbstractModel, require_sites
from provi.core.enum import enumerated_log_density
from provi.core.trace import constrain_params, run, sum_log_prob, unconstrain_params

__all__ = ["ModelProgram"]


@final
class ModelProgram(AbstractModel):
    """The model `model` as inspected (`info`): its log joint over the latent sites."""

    model: Callable
    info: ModelInfo

    @property
    def shapes(self) -> dict:
        return {s.name: s.shape for s in self.info.latents}

    @property
    def plates(self) -> dict:
        return self.info.plates

    def replaying(self, indices: dict) -> "ModelProgram":
        return dataclasses.replace(self, model=ReplayPlates(self.model, indices)) if indices else self

    def numpyro_fn(self, params):
        return self.model, constrain_params(params, self.info.params)

    def init_params(self) -> dict:
        return unconstrain_params(self.info.params)

    def log_density(self, params, values, args, kwargs, keys):
        """log p(data, values); with enumerated sites, their sum out of the joint (exactly, plate by
        plate and along `markov`/`scan` chains: NumPyro's funsor-based tensor variable elimination, and
        provi's forward algorithm for a `scan` chain)."""
        require_sites(values, self.info.latent_names, "the model's density")
        fixed = constrain_params(params, self.info.params)
        key = keys()

        def one(v):
            if self.info.enumerated:
                return enumerated_log_density(self.model, key, args, kwargs, {**fixed, **v}, self.info.max_plate_nesting,
                                              self.info.chain)
            return sum_log_prob(run(self.model, key, args, kwargs, {**fixed, **v}))

        return vectorise(one, batch_ndim(values, self.shapes))(values)

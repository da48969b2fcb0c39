"""`NumPyroGuide`: a user's NumPyro guide function; its `numpyro.param` sites are its parameters."""

from __future__ import annotations

import dataclasses
from typing import Callable, final

import jax
from numpyro.distributions import constraints

from provi.core.batching import batch_ndim, vectorise
from provi.core.model import ModelInfo
from provi.core.plates import ReplayPlates, subsampled_plates
from provi.core.program import AbstractGuide, require_sites
from provi.core.trace import constrain_params, run, sum_log_prob, trace_model, unconstrain_params
from provi.errors import ModelError, ObjectiveError
from provi.estimators import resolve
from provi.estimators.hook import draw_sites

__all__ = ["NumPyroGuide"]


@final
class NumPyroGuide(AbstractGuide):
    """A NumPyro guide function; each latent site is drawn under its estimator (`provi.estimators`)."""

    guide: Callable
    info: ModelInfo  # the model's
    params_spec: dict  # name -> (initial value, constraint)
    sites: tuple
    shapes: dict
    estimators: dict  # site -> estimator
    plates: dict  # subsampled plates: name -> (size, subsample size)
    site_fns: dict  # site -> its distribution as traced (sizes estimator state)

    @property
    def latents(self) -> tuple:
        return self.info.latent_names

    @property
    def is_point(self) -> bool:
        return False

    @property
    def optimise(self) -> bool:
        return True

    @property
    def has_density(self) -> bool:
        return True

    def positions(self, params, consts):
        raise ObjectiveError(f"the NumPyro guide {self.name!r} has no particles: use guide=provi.guides.Particles(n)")

    def components(self, params, consts):
        raise ObjectiveError(f"the NumPyro guide {self.name!r} has no mixture components: use "
                             "guide=provi.guides.MeanFieldMixture(k)")

    def gaussian(self, params, consts):
        raise ObjectiveError(f"the NumPyro guide {self.name!r} is not one of provi's Gaussian families: use "
                             "guide='fullrank' or guide='meanfield'")

    def place(self, consts, x):
        raise ObjectiveError(f"the NumPyro guide {self.name!r} has no flat coordinates: use a family from provi.guides")

    def local_moments(self, params, consts):
        return {}  # LocalReparam does not apply to a NumPyro guide's sites (`resolve` refuses it)

    @property
    def name(self) -> str:
        return getattr(self.guide, "__name__", "guide")  # a functools.partial has no name

    def replaying(self, indices: dict) -> "NumPyroGuide":
        return dataclasses.replace(self, guide=ReplayPlates(self.guide, indices)) if indices else self

    def numpyro_fn(self, params):
        return self.guide, constrain_params(params, self.params_spec)

    def spec(self) -> dict:
        return {"kind": "numpyro", "name": self.name}

    @classmethod
    def build(cls, guide, model_info: ModelInfo, args, kwargs, key, estimators) -> "NumPyroGuide":
        """Trace `guide` once, check its sites against the model's, and choose each site's estimator."""
        tr = trace_model(guide, args, kwargs, key)
        spec, sites, shapes = {}, [], {}
        for name, site in tr.items():
            if site["type"] == "param":
                spec[name] = (site["value"], site["kwargs"].get("constraint", constraints.real))
            elif site["type"] == "sample" and not site["is_observed"]:
                sites.append(name)
                shapes[name] = tuple(jax.numpy.shape(site["value"]))
                aux = site["infer"].get("is_auxiliary", False)
                if name in {s.name for s in model_info.enumerated}:
                    raise ModelError(
                        f"the guide samples site {name!r}, which the model enumerates (sums out); remove it from the "
                        "guide, or remove infer={'enumerate': 'parallel'} from the model to give it a guide site"
                    )
                if name not in model_info.latent_names and not aux:
                    raise ModelError(
                        f"the guide samples site {name!r}, which is not a latent site of the model "
                        f"(the model's latent sites are {list(model_info.latent_names)}); mark auxiliary "
                        "guide variables with infer={'is_auxiliary': True}"
                    )
        missing = [n for n in model_info.latent_names if n not in sites]
        if missing:
            raise ModelError(f"the guide has no sample statement for the model's latent site(s) {missing}")
        unknown = sorted(set(estimators or {}) - set(sites))
        if unknown:
            raise ModelError(f"estimators given for unknown site(s) {unknown}; the guide's sample sites are {sites}")
        chosen = {name: resolve(name, tr[name], estimators) for name in sites}
        fns = {name: tr[name]["fn"] for name in sites}
        return cls(guide, model_info, spec, tuple(sites), shapes, chosen, subsampled_plates(tr), fns)

    def init_params(self, key=None, scale=None) -> dict:
        return unconstrain_params(self.params_spec)

    def sim(self, params, consts, key, n, args, kwargs, ledger, branching=None):
        """Draws of every latent site, each rewritten by its estimator (`provi.estimators.hook`)."""
        fixed = constrain_params(params, self.params_spec)
        return draw_sites(lambda k: run(self.guide, k, args, kwargs, fixed), self.sites, self.estimators, key, n, ledger, branching)

    def log_density(self, params, consts, values, args, kwargs):
        require_sites(values, self.sites, "the guide's density")
        fixed = constrain_params(params, self.params_spec)
        key = jax.random.PRNGKey(0)

        def one(v):
            return sum_log_prob(run(self.guide, key, args, kwargs, {**fixed, **v}))

        return vectorise(one, batch_ndim(values, self.shapes))(values)

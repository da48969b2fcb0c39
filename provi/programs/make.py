"""From `provi.fit`'s `guide` argument to a guide program: the guide-name table and `make_guide`."""

from __future__ import annotations

from numpyro.distributions.transforms import IdentityTransform, IndependentTransform

from provi.core.model import ModelInfo
from provi.core.program import AbstractGuide
from provi.core.space import LatentSpace
from provi.defaults import AUTO_RANK, FULLRANK_MAX_DIM, LOWRANK_MAX_DIM
from provi.errors import EstimatorError, ModelError
from provi.estimators import LocalReparam, Reparam
from provi.guides import IAF, Delta, Family, FullRank, GaussianMixture, Laplace, LowRank, MeanField, ModeMixture, NeuralSplineFlow, Particles, Planar, Radial, RealNVP, StudentT
from provi.programs.family import FamilyGuide
from provi.programs.numpyro_guide import NumPyroGuide

__all__ = ["GUIDES", "family_for", "make_guide", "guide_from_spec"]

GUIDES = {
    "delta": Delta,
    "map": Delta,
    "meanfield": MeanField,
    "fullrank": FullRank,
    "lowrank": LowRank,
    "laplace": Laplace,
    "flow": RealNVP,
    "realnvp": RealNVP,
    "iaf": IAF,
    "nsf": NeuralSplineFlow,
    "planar": Planar,
    "radial": Radial,
    "mixture": GaussianMixture,
    "particles": Particles,
    "studentt": StudentT,
}
FAMILIES = {cls.__name__: cls for cls in (*GUIDES.values(), ModeMixture)}  # ModeMixture: built by auto


def family_for(guide, dim: int) -> Family:
    """The family a guide argument names; "auto" picks the Gaussian the dimension affords.

    >>> family_for("auto", 10)
    FullRank()
    """
    if isinstance(guide, Family):
        return guide
    if guide == "auto":
        if dim <= FULLRANK_MAX_DIM:
            return FullRank()
        return LowRank(rank=AUTO_RANK) if dim <= LOWRANK_MAX_DIM else MeanField()
    if isinstance(guide, str) and guide in GUIDES:
        return GUIDES[guide]()
    names = ", ".join(repr(k) for k in (*GUIDES, "auto"))
    raise ValueError(
        f"unknown guide {guide!r}: use one of {names}, a family from provi.guides, "
        "or a NumPyro guide function with numpyro.param sites"
    )


def make_guide(guide, info: ModelInfo, args, kwargs, key, estimators) -> AbstractGuide:
    """A guide program for the `guide` argument of `provi.fit` (a guide program is taken as it is)."""
    if isinstance(guide, AbstractGuide):
        return guide
    if callable(guide) and not isinstance(guide, Family):
        return NumPyroGuide.build(guide, info, args, kwargs, key, estimators)
    discrete = [s for s in info.latents if s.discrete]
    if discrete:
        s = discrete[0]
        raise ModelError(
            f"latent site {s.name!r} is discrete ({s.distribution}), which a continuous family cannot "
            "approximate. Marginalise it in the model (e.g. a mixture distribution), or write a NumPyro "
            "guide with a discrete sample statement for it and choose its gradient estimator with "
            "infer={'estimator': provi.estimators.Enumerate()} (or Reinforce(), MVD(), ...)"
        )
    if estimators:
        unknown = sorted(set(estimators) - set(info.latent_names))
        if unknown:
            raise ModelError(f"estimators given for unknown site(s) {unknown}; latent sites are {list(info.latent_names)}")
        for site, est in estimators.items():
            if not isinstance(est, (Reparam, LocalReparam)):
                raise EstimatorError(
                    f"site {site!r}: a family guide draws every site by reparameterization, so {est!r} cannot apply; "
                    "to choose a site's estimator, write a NumPyro guide function with a sample statement for it"
                )
    space = LatentSpace.of(info.latents)
    family = family_for(guide, space.dim)
    local = tuple(s for s, est in (estimators or {}).items() if isinstance(est, LocalReparam))
    if local:
        _check_local(local, family, info)
    return FamilyGuide(space, family, local)


def _check_local(local: tuple, family: Family, info: ModelInfo) -> None:
    """Refuse `LocalReparam` where it cannot be exact: a site off the real line, or a family other
    than mean-field, except a full-rank one over a single latent site (whose moments then are its
    joint Gaussian; with other latent sites it would need u's conditional on their draws).
    `provi.engine.step` checks that the model uses each site's moments."""
    sole = type(family) is FullRank and len(info.latents) == 1
    if type(family) is not MeanField and not sole:
        raise EstimatorError(
            f"site {local[0]!r}: LocalReparam replaces the site's draw by the guide's moments, which stays exact "
            f"for guide='meanfield' (independent coordinates), or guide='fullrank' when it is the model's only "
            f"latent site; not {family!r} over the latent sites {list(info.latent_names)}"
        )
    sites = {s.name: s for s in info.latents}
    for name in local:
        t = sites[name].transform
        while isinstance(t, IndependentTransform):
            t = t.base_transform
        if not isinstance(t, IdentityTransform):
            raise EstimatorError(
                f"site {name!r}: LocalReparam needs a weight on the real line (its prior has support "
                f"{sites[name].support}); give the weights a prior on the reals"
            )


def guide_from_spec(spec: dict) -> Family:
    """The family a saved guide spec (`AbstractGuide.spec()`) describes."""
    if spec["kind"] != "family":
        raise ValueError(f"this fit used the NumPyro guide {spec['name']!r}: pass it as guide=")
    if spec["name"] not in FAMILIES:
        raise ValueError(f"unknown family {spec['name']!r} in the saved fit; provi knows {sorted(FAMILIES)}")
    return FAMILIES[spec["name"]](**spec.get("fields", {}))

"""Automatic non-centring of hierarchical loc-scale sites: the variationally inferred
parameterisation (VIP) of Gorinova, Moore & Hoffman (2020), through NumPyro's
`LocScaleReparam(centered=None)`.

A latent site `x ~ Normal(loc, scale)` whose `loc` or `scale` depends on other latent sites (a
centred hierarchy: the funnel of eight schools' `theta` given `tau`) is rewritten as
`x = loc + scale^c (x_decentered - loc^c ...)`: NumPyro's partial decentring, with a learnable
centredness `c` in [0, 1] per site (the parameter `{name}_centered`, starting at 0.5), which a fit
learns with the variational parameters by maximising the ELBO. `x` stays in the model as a
deterministic site, so results are reported in the model's own parameterisation;
`{name}_decentered` is the new latent site.

    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    ...     numpyro.sample("x", dist.Normal(0.0, tau))
    >>> decentrable_sites(model, (), {})
    ('x',)
"""

from __future__ import annotations

from typing import Callable

import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer.inspect import get_dependencies
from numpyro.infer.reparam import LocScaleReparam

from provi.core.trace import abstract_trace

__all__ = ["decentrable_sites", "decentre", "LOC_SCALE_FAMILIES"]

# distributions NumPyro's LocScaleReparam rebuilds from loc, scale (and the listed shape parameters)
LOC_SCALE_FAMILIES = {dist.Normal: (), dist.StudentT: ("df",), dist.Cauchy: (), dist.Laplace: (), dist.Logistic: (),
                      dist.Gumbel: ()}


def _base(fn):
    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def decentrable_sites(model: Callable, args: tuple, kwargs: dict) -> tuple[str, ...]:
    """The latent sites of `model` with a loc-scale distribution (`LOC_SCALE_FAMILIES`) on the
    real line whose parameters depend on another latent site, in the model's order; () when the
    model cannot be inspected this way (dependency tracing fails on some models)."""
    try:
        deps = get_dependencies(model, args, kwargs)["prior_dependencies"]
        tr = abstract_trace(model, args, kwargs)  # no prior draws: nothing computed, nothing compiled
    except Exception:  # noqa: BLE001 - an inspection that fails means: no automatic reparameterisation
        return ()
    latent = {n for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    out = []
    for name, site in tr.items():
        if name not in latent or site["infer"].get("enumerate"):
            continue
        base = _base(site["fn"])
        if base.support is not constraints.real:
            continue
        if type(base) in LOC_SCALE_FAMILIES and (set(deps.get(name, {})) & latent) - {name}:
            out.append(name)
    return tuple(out)


def decentre(model: Callable, sites: tuple[str, ...], centered: float | None = None) -> Callable:
    """`model` with each of `sites` decentred: partially, its centredness a learnable parameter
    (`centered=None`), or to the given centredness (0.0: fully non-centred)."""
    return numpyro.handlers.reparam(model, config={s: _Centring(centered) for s in sites}) if sites else model


class _Centring(LocScaleReparam):
    """`LocScaleReparam(centered)` with the distribution's shape parameters (StudentT's df)
    carried over, found from the site's distribution when it is met."""

    def __call__(self, name, fn, obs):
        self.shape_params = LOC_SCALE_FAMILIES.get(type(_base(fn)), ())
        return super().__call__(name, fn, obs)

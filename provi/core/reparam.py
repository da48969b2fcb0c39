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

A latent `f ~ MultivariateNormal(loc, K)` whose `loc` or `K` depends on other latent sites (a
Gaussian process's latent values given its amplitude and length scale) is non-centred fully, as
`f = loc + chol(K) f_decentered` with `f_decentered ~ N(0, I)`: partial centring has no closed
form for a matrix scale, so its centredness is 0 whatever `centered` is asked for.

    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    ...     numpyro.sample("x", dist.Normal(0.0, tau))
    >>> decentrable_sites(model, (), {})
    ('x',)
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer.inspect import get_dependencies
from numpyro.infer.reparam import LocScaleReparam

from provi.core.trace import abstract_trace

__all__ = ["decentrable_sites", "decentre", "LOC_SCALE_FAMILIES", "MATRIX_SCALE_FAMILIES"]

# distributions NumPyro's LocScaleReparam rebuilds from loc, scale (and the listed shape parameters)
LOC_SCALE_FAMILIES = {dist.Normal: (), dist.StudentT: ("df",), dist.Cauchy: (), dist.Laplace: (), dist.Logistic: (),
                      dist.Gumbel: ()}
MATRIX_SCALE_FAMILIES = (dist.MultivariateNormal,)  # non-centred fully through the Cholesky factor


def _base(fn):
    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def decentrable_sites(model: Callable, args: tuple, kwargs: dict) -> tuple[str, ...]:
    """The latent sites of `model` with a loc-scale distribution on the real line
    (`LOC_SCALE_FAMILIES`) or a multivariate normal (`MATRIX_SCALE_FAMILIES`) whose parameters
    depend on another latent site, in the model's order; () when the
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
        decentrable = ((type(base) in LOC_SCALE_FAMILIES and base.support is constraints.real)
                       or type(base) in MATRIX_SCALE_FAMILIES)
        if decentrable and (set(deps.get(name, {})) & latent) - {name}:
            out.append(name)
    return tuple(out)


def decentre(model: Callable, sites: tuple[str, ...], centered: float | None = None) -> Callable:
    """`model` with each of `sites` decentred: partially, its centredness a learnable parameter
    (`centered=None`), or to the given centredness (0.0: fully non-centred)."""
    return numpyro.handlers.reparam(model, config={s: _Centring(centered) for s in sites}) if sites else model


class _Centring(LocScaleReparam):
    """`LocScaleReparam(centered)` with the distribution's shape parameters (StudentT's df)
    carried over, found from the site's distribution when it is met; a multivariate normal is
    non-centred through its Cholesky factor instead."""

    def __call__(self, name, fn, obs):
        if type(_base(fn)) in MATRIX_SCALE_FAMILIES:
            return self._through_cholesky(name, fn, obs)
        self.shape_params = LOC_SCALE_FAMILIES.get(type(_base(fn)), ())
        return super().__call__(name, fn, obs)

    def _through_cholesky(self, name, fn, obs):
        """`f = loc + L z`, `z ~ N(0, I)` (the site `{name}_decentered`), L the Cholesky factor of
        a multivariate normal `fn` (batched and `to_event` wrappers kept); `f` a deterministic site."""
        assert obs is None, "a non-centred multivariate normal cannot be observed"
        base, expand_shape, event_dim = self._unwrap(fn)
        loc = jnp.broadcast_to(base.loc, base.batch_shape + base.event_shape)
        noise = self._wrap(dist.Normal(jnp.zeros_like(loc), 1.0).to_event(1), expand_shape, event_dim)
        z = numpyro.sample(f"{name}_decentered", noise)
        return None, loc + jnp.squeeze(base.scale_tril @ z[..., None], -1)

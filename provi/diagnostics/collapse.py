"""Posterior-collapse diagnostics for amortized Gaussian latents (VAEs).

For each guide site inside the data plate whose distribution is Normal, over the whole data set:
- `kl`: KL(q(z_d | x_n) || p(z_d)) per latent dimension d, averaged over data points n (exact
  when the model's prior at the site is Normal too; otherwise a one-draw Monte Carlo estimate);
- `activity`: Var_n(E_q[z_d | x_n]) per dimension, and `active` units, those with activity above
  `threshold` (0.01, Burda et al. 2016). A collapsed dimension has KL near 0 and is inactive: the
  decoder ignores it and the encoder returns the prior for every x.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Normal

from provi.core.program import AbstractGuide, AbstractModel
from provi.core.trace import base_distribution, run
from provi.defaults import COLLAPSE_THRESHOLD

__all__ = ["SiteCollapse", "Collapse", "posterior_collapse"]


@dataclasses.dataclass
class SiteCollapse:
    """Collapse statistics of one latent site: per-dimension KL (nats), activity and active flags."""

    site: str
    kl: np.ndarray
    activity: np.ndarray
    active: np.ndarray
    exact_kl: bool

    @property
    def active_units(self) -> int:
        return int(np.sum(self.active))

    def __str__(self):
        n = self.kl.size
        kls = " ".join(f"{x:.2f}" for x in self.kl.ravel())
        head = f"{self.site}: {self.active_units} of {n} latent units active; KL per unit (nats): {kls}"
        if self.active_units < n:
            head += f"\n  posterior collapse: {n - self.active_units} unit(s) carry no information about the data"
        return head


@dataclasses.dataclass
class Collapse:
    """Collapse statistics of every amortized Normal site of a fit."""

    sites: dict
    threshold: float

    @property
    def total_kl(self) -> float:
        return float(sum(np.sum(s.kl) for s in self.sites.values()))

    @property
    def active_units(self) -> int:
        return sum(s.active_units for s in self.sites.values())

    def __str__(self):
        return "\n".join(str(s) for s in self.sites.values())


def _normal(fn):
    base = base_distribution(fn)
    return base if isinstance(base, Normal) else None


def posterior_collapse(model: AbstractModel, guide: AbstractGuide, params: dict, args: tuple, kwargs: dict, *,
                       plate: str = "data", threshold: float = COLLAPSE_THRESHOLD, seed: int = 0) -> Collapse | None:
    """KL per latent dimension and active units of an amortized NumPyro guide with parameters
    `params` ({"model", "guide"}), over the data at `args`/`kwargs` (every element of `plate`, no
    minibatch). None when the guide is not a NumPyro function or has no Normal site inside `plate`.
    (`FitResult.posterior_collapse` calls this with a fit's programs and data.)"""
    plates = {**model.plates, **guide.plates}
    full = {name: jnp.arange(size) for name, (size, _) in plates.items()}
    guide_fn = guide.replaying(full).numpyro_fn(params["guide"])
    if guide_fn is None:
        return None
    key_g, key_m = jax.random.split(jax.random.PRNGKey(seed))
    g_tr = run(guide_fn[0], key_g, args, kwargs, guide_fn[1])
    local = {}
    for name in guide.sites:
        site = g_tr[name]
        q = _normal(site["fn"])
        if q is None or not any(f.name == plate for f in site["cond_indep_stack"]):
            continue
        shape = jnp.shape(site["value"])
        local[name] = (jnp.broadcast_to(q.loc, shape), jnp.broadcast_to(q.scale, shape), site)
    if not local:
        return None
    values = {name: g_tr[name]["value"] for name in guide.sites}
    model_fn, m_params = model.replaying(full).numpyro_fn(params["model"])
    m_tr = run(model_fn, key_m, args, kwargs, {**m_params, **values})
    out = {}
    for name, (loc, scale, site) in local.items():
        axis = len(loc.shape) - len(site["fn"].event_shape) - len(site["fn"].batch_shape) + _plate_axis(site, plate)
        p = _normal(m_tr[name]["fn"]) if name in m_tr else None
        if p is not None:
            pl, ps = jnp.broadcast_to(p.loc, loc.shape), jnp.broadcast_to(p.scale, loc.shape)
            kl = jnp.log(ps / scale) + (scale**2 + (loc - pl) ** 2) / (2 * ps**2) - 0.5
        else:  # one-draw Monte Carlo estimate of log q - log p, per element
            z = site["value"]
            kl = Normal(loc, scale).log_prob(z) - _elementwise_log_prob(m_tr[name]["fn"], z)
        kl = np.asarray(jnp.mean(kl, axis=axis))
        activity = np.asarray(jnp.var(loc, axis=axis))
        out[name] = SiteCollapse(name, kl, activity, activity > threshold, p is not None)
    return Collapse(out, threshold)


def _plate_axis(site, plate) -> int:
    """The axis of the plate in the site's batch shape, counted from the batch shape's start."""
    frame = next(f for f in site["cond_indep_stack"] if f.name == plate)
    return len(site["fn"].batch_shape) + frame.dim


def _elementwise_log_prob(fn, z):
    return base_distribution(fn).log_prob(z)

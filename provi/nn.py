"""Neural networks in models and guides, and per-data-point densities for amortized inference.

Floor 7 (beside `provi.result`): modelling helpers for users' models, and evaluation of fits.

- `bayesian_module(name, net, prior=)` makes each weight array of an equinox module a latent sample
  site with a prior (Bayes by backprop: `provi.fit` with a mean-field or low-rank family fits it).
- `module(name, net)` registers an equinox module's arrays as one `numpyro.param` site (NumPyro's
  own `numpyro.contrib.module.eqx_module`), so `provi.fit` learns a decoder in the model
  (`params["model"]`) and an encoder in the guide (`params["guide"]`).
- `pointwise_density(program, values, plate=)` splits a log density into the terms of each element
  of a data plate and the rest: what per-data-point objectives (IWAE, DReG) and held-out
  log-likelihoods need.
- `log_likelihood(result, *args, k=)` estimates log p(x_i) of each data point by importance
  sampling with `k` draws from the amortized guide.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from provi.core.pointwise import Pointwise, pointwise_density
from provi.diagnostics import evaluation

__all__ = ["bayesian_module", "module", "Pointwise", "pointwise_density", "log_likelihood"]


def module(name: str, net: Any):
    """Register the inexact arrays of equinox module `net` as the parameter site `name + "$params"`
    and return the module with the current values; use it inside a model or a guide:

        decoder = provi.nn.module("decoder", DECODER)   # DECODER made once, outside the model
        logits = jax.vmap(decoder)(z)
    """
    if not isinstance(net, eqx.Module):
        raise TypeError(
            f"provi.nn.module({name!r}, ...) takes an equinox Module, got {type(net).__name__}; "
            "for flax use numpyro.contrib.module.flax_module"
        )
    return eqx_module(name, net)


def bayesian_module(name: str, net: Any, prior: dist.Distribution | Callable | None = None, *, where: Callable = eqx.is_inexact_array):
    """Sample each array of equinox module `net` that `where` selects as a latent site named
    `name + "." + its path` (e.g. "mlp.layers.0.weight") and return the module with the draws;
    call it inside a model, outside any plate:

        >>> import jax, equinox as eqx, numpyro, numpyro.distributions as dist, provi
        >>> NET = eqx.nn.Linear(3, 1, key=jax.random.key(0))
        >>> def model(x, y):
        ...     net = provi.nn.bayesian_module("net", NET, prior=dist.Normal(0.0, 1.0))
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("y", dist.Normal(jax.vmap(net)(x)[:, 0], 0.1), obs=y)
        >>> sorted(numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(
        ...     jax.numpy.ones((4, 3)), jax.numpy.zeros(4)))
        ['data', 'net.bias', 'net.weight', 'y']

    `prior` is a distribution with scalar shape (expanded to each array, every weight independent;
    default standard normal), one shaped like each array, or a function `(site, array) ->
    distribution`, e.g. scaled by fan-in. Tempering: a temperature T on the likelihood (wrap the
    likelihood's sites in `numpyro.handlers.scale(scale=1 / T)`) targets p(w) p(D | w)^(1/T); an
    ELBO with its KL term weighted by beta has the same optimum as T = beta (it is beta times the
    tempered ELBO), so cold posteriors are this one knob.
    """
    if not isinstance(net, eqx.Module):
        raise TypeError(f"provi.nn.bayesian_module({name!r}, ...) takes an equinox Module, got {type(net).__name__}")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(net)
    drawn = []
    for path, leaf in leaves:
        if not where(leaf):
            drawn.append(leaf)
            continue
        site = ".".join([name] + [_path_key(k) for k in path])
        drawn.append(numpyro.sample(site, _weight_prior(prior, site, leaf)))
    return jax.tree_util.tree_unflatten(treedef, drawn)


def _path_key(key) -> str:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    return str(key).strip(".[]'")


def _weight_prior(prior, site: str, leaf) -> dist.Distribution:
    d = dist.Normal(0.0, 1.0) if prior is None else prior
    if not isinstance(d, dist.Distribution):
        d = d(site, leaf)
    if not isinstance(d, dist.Distribution):
        raise TypeError(f"bayesian_module: the prior for {site!r} must be a numpyro distribution, got {type(d).__name__}")
    shape = tuple(np.shape(leaf))
    if d.event_shape:
        raise ValueError(f"bayesian_module: the prior for {site!r} must have no event shape (one density per weight), got {d.event_shape}")
    if d.batch_shape == ():
        d = d.expand(shape)
    elif d.batch_shape != shape:
        raise ValueError(f"bayesian_module: the prior for {site!r} has shape {d.batch_shape}, the weights {shape}: give a scalar prior or one of the weights' shape")
    return d.to_event(len(shape))


def log_likelihood(result, *args, k: int = 1000, plate: str = "data", chunk: int = 100, seed: int = 0, **kwargs) -> np.ndarray:
    """log p(x_i) of each element of plate `plate` at the model's arguments `args`/`kwargs` (e.g.
    held-out data, with subsampling off; the fitted data by default), estimated by importance
    sampling with `k` draws from the fitted amortized guide: log (1/k) sum_j p(x_i, z_ij) /
    q(z_ij | x_i). A lower bound in expectation that tightens as k grows (Burda et al. 2016).
    Needs a NumPyro guide whose latent sites all lie in the plate; model parameters are the fitted
    point values.
    """
    kwargs = {**result.kwargs, **kwargs}
    args = args if args else result.args
    return evaluation.log_likelihood(result.model, result.guide, result.params, result.consts, args, kwargs,
                                     k=k, plate=plate, chunk=chunk, seed=seed)

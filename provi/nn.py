"""Neural networks in models and guides, and per-data-point densities for amortized inference.

Floor 7 (beside `provi.result`): modelling helpers for users' models, and evaluation of fits.

- `bayesian_module(name, net, prior=)` makes each weight array of an equinox module a latent sample
  site with a prior (Bayes by backprop: `provi.fit` with a mean-field or low-rank family fits it);
  under `provi.estimators.LocalReparam` its dense layers become `LocalLinear`s, which sample
  pre-activations from the mean-field guide's moments, and its convolutions `FlipoutConv`s.
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
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from provi.core.local import local_moments, per_example_normal
from provi.core.pointwise import Pointwise, pointwise_density
from provi.diagnostics import evaluation
from provi.errors import EstimatorError

__all__ = ["bayesian_module", "LocalLinear", "FlipoutConv", "module", "Pointwise", "pointwise_density", "log_likelihood"]


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

    With `provi.estimators.LocalReparam()` on a layer's weight site (and optionally its bias) in
    a mean-field fit, each `eqx.nn.Linear` so marked samples its pre-activations, per data point
    and particle, from the guide's moments instead of using the drawn weights (`LocalLinear`), and
    each `eqx.nn.Conv` decorrelates data points by Flipout (`FlipoutConv`); anywhere else (NUTS,
    plain NumPyro) the module is the drawn one.
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
    return _localised(name, jax.tree_util.tree_unflatten(treedef, drawn))


def _localised(name: str, net):
    """`net` with each `eqx.nn.Linear` (`eqx.nn.Conv`) whose weight site has local moments
    replaced by a `LocalLinear` (`FlipoutConv`); `net` itself where none has."""
    is_layer = lambda x: isinstance(x, (eqx.nn.Linear, eqx.nn.Conv))
    for path, layer in jax.tree_util.tree_flatten_with_path(net, is_leaf=is_layer)[0]:
        if not is_layer(layer):
            continue
        prefix = ".".join([name] + [_path_key(k) for k in path])
        moments = local_moments(prefix + ".weight")
        if moments is None:
            continue
        if jnp.shape(moments[1]) != jnp.shape(moments[0]):
            raise EstimatorError(
                f"site {prefix}.weight: LocalReparam on a dense layer samples pre-activations from independent "
                "weight normals, so it needs guide='meanfield', not a full-rank guide"
            )
        bias = local_moments(prefix + ".bias") if layer.use_bias else None
        bias_loc, bias_scale = bias if bias is not None else (layer.bias, None)
        key, witness = numpyro.prng_key(), jax.lax.stop_gradient(layer.weight)
        if isinstance(layer, eqx.nn.Linear):
            local = LocalLinear(moments[0], moments[1], bias_loc, bias_scale, layer.in_features, layer.out_features, key, witness)
        else:
            mean = eqx.tree_at(lambda l: l.weight, layer, moments[0])
            perturbation = eqx.tree_at(lambda l: l.weight, layer, layer.weight - moments[0])
            if layer.use_bias:
                mean = eqx.tree_at(lambda l: l.bias, mean, bias_loc)
                perturbation = eqx.tree_at(lambda l: l.bias, perturbation, jnp.zeros_like(layer.bias))
            local = FlipoutConv(mean, perturbation, bias_scale, key)
        net = eqx.tree_at(lambda n, path=path: _at(n, path), net, local)
    return net


def _at(tree, path):
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            tree = getattr(tree, k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            tree = tree[k.idx]
        else:
            tree = tree[k.key]
    return tree


class LocalLinear(eqx.Module):
    """A dense layer whose weights are independent normals N(loc, scale^2) (and bias N(bias_loc,
    bias_scale^2), or the fixed `bias_loc` when `bias_scale` is None): each call draws its output
    x @ W + b from N(loc @ x + bias_loc, scale^2 @ x^2 + bias_scale^2), with noise independent
    across every vmap around it (`provi.core.local.per_example_normal`; `witness`, the drawn
    weights, carries the particle axis). Built by `bayesian_module` under `LocalReparam`.
    """

    loc: jax.Array
    scale: jax.Array
    bias_loc: jax.Array | None
    bias_scale: jax.Array | None
    in_features: Any = eqx.field(static=True)
    out_features: Any = eqx.field(static=True)
    key: jax.Array
    witness: jax.Array

    def __call__(self, x, *, key=None):
        x = jnp.reshape(x, (1,)) if self.in_features == "scalar" else x
        mean, var = self.loc @ x, jnp.square(self.scale) @ jnp.square(x)
        if self.bias_loc is not None:
            mean = mean + self.bias_loc
        if self.bias_scale is not None:
            var = var + jnp.square(self.bias_scale)
        eps = per_example_normal(self.key, mean.shape, mean.dtype, x, self.witness)
        positive = var > 0
        sd = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)  # no infinite gradient at 0
        y = mean + sd * eps
        return jnp.reshape(y, ()) if self.out_features == "scalar" else y


class FlipoutConv(eqx.Module):
    """A convolution whose weights are independent normals N(loc, scale^2): every output position
    of a data point shares that data point's weights, so its pre-activations cannot be drawn one by
    one; instead each call (data point, particle) flips the signs of the drawn perturbation
    W - loc by input and output channel (Flipout, Wen et al. 2018): x -> conv(x, loc) + r *
    conv(s * x, W - loc) with random signs r, s. Each data point's weights then have exactly the
    guide's distribution (the perturbation is symmetric), so the ELBO gradient stays unbiased,
    and data points no longer share their noise. A bias with moments is drawn per call from
    N(bias loc, `bias_scale`^2). Built by `bayesian_module` under `LocalReparam`.
    """

    mean: eqx.nn.Conv  # the layer with weight loc (and the bias loc, or the drawn bias)
    perturbation: eqx.nn.Conv  # the layer with weight W - loc and a zero bias
    bias_scale: jax.Array | None
    key: jax.Array

    def __call__(self, x, *, key=None):
        c_in, c_out = self.mean.in_channels, self.mean.out_channels
        ones = (1,) * self.mean.num_spatial_dims
        e = per_example_normal(self.key, (c_in + c_out,), x.dtype, x, self.perturbation.weight)
        signs = jnp.where(e >= 0, 1.0, -1.0).astype(x.dtype)
        s, r = signs[:c_in].reshape((c_in,) + ones), signs[c_in:].reshape((c_out,) + ones)
        y = self.mean(x) + r * self.perturbation(s * x)
        if self.bias_scale is not None:
            key = jax.random.fold_in(self.key, 1)
            y = y + self.bias_scale * per_example_normal(key, self.bias_scale.shape, x.dtype, x, self.perturbation.weight)
        return y


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

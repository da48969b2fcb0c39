"""Importance-weighted bounds: IWAE and its gradient estimators (DReG, VIMCO) and variants
(PIWAE, MIWAE, CIWAE of Rainforth et al. 2018)."""

import jax
import jax.numpy as jnp

from provi.core.pointwise import pointwise_density
from provi.core.objective import objective
from provi.core.vocab import claim_scores, density, pending_scores, detach, replace_grad, sim
from provi.errors import ObjectiveError
from provi.objectives.util import leave_one_out, log_mean_exp, normalised_weights


def _per_point(model, guide, z, plate: str, what: str):
    """`(log_p, log_q)`: the model's and the guide's densities at draws `z` (k, B, ...) split by
    `plate`, checking that every latent site lies inside it."""
    log_p, log_q = pointwise_density(model, z, plate=plate), pointwise_density(guide, z, plate=plate)
    outside = sorted(set(log_p.outside) | set(log_q.outside))
    if outside:
        raise ObjectiveError(
            f"{what}(plate={plate!r}) bounds each element of plate {plate!r} on its own, so every latent "
            f"site must lie inside it; site(s) {outside} lie outside: use plate=None (one bound over the "
            "whole data set), or give those sites point values (numpyro.param)"
        )
    return log_p, log_q


@objective
def IWAE(model, guide, *args, k: int = 5, plate: str | None = None):
    """The importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i) (Burda et al. 2016).

    `plate` (the name of a data plate holding every latent site, as in an amortized model): the
    bound of each plate element on its own, sum_n log (1/k) sum_i p(x_n, z_ni) / q(z_ni | x_n),
    scaled by a subsampled plate's size / batch: Burda et al.'s per-data-point bound, much
    tighter than one bound over the whole data set (the default, `plate=None`).
    """
    z, log_q = sim(guide, *args, n=k)
    if plate is None:
        return log_mean_exp(density(model, z, *args) - log_q)
    log_p, log_q = _per_point(model, guide, z, plate, "IWAE")
    return log_p.scale * jnp.sum(log_mean_exp(log_p.local - log_q.local, axis=0)) + jnp.mean(log_p.rest)


@objective
def DReG(model, guide, *args, k: int = 5, plate: str | None = None):
    """The IWAE bound with doubly reparameterized gradients (Tucker et al. 2019): the guide's
    gradient is sum_i w_i^2 d log w_i / dz_i dz_i/dphi (log q with detached parameters); the model's
    is IWAE's, sum_i w_i d log p(x, z_i) / dtheta. Needs a reparameterized guide. `plate`: per
    data point, as in `IWAE`."""
    z, _ = sim(guide, *args, n=k)
    if plate is not None:
        return _dreg_per_point(model, guide, z, plate)
    log_p = density(model, z, *args)
    log_w = log_p - density(detach(guide), z, *args)
    w = normalised_weights(log_w)
    model_part = jnp.sum((w - w**2) * density(model, detach(z), *args))
    return replace_grad(log_mean_exp(log_w), jnp.sum(w**2 * log_w) + model_part)


def _vimco_per_point(model, guide, z, plate):
    scored = pending_scores(guide)
    claim_scores(guide)
    log_p, log_q = _per_point(model, guide, z, plate, "VIMCO")
    log_w = log_p.local - log_q.local  # (k, B)
    bound = log_mean_exp(log_w, axis=0)  # (B,)
    value = log_p.scale * jnp.sum(bound) + jnp.mean(log_p.rest)
    if not scored:
        return value
    scores = pointwise_density(guide, detach(z), plate=plate, sites=scored).local  # (k, B)
    signal = jax.lax.stop_gradient(bound - jax.vmap(leave_one_out, in_axes=1, out_axes=1)(log_w))
    return value + log_p.scale * jnp.sum(signal * (scores - jax.lax.stop_gradient(scores)))


def _dreg_per_point(model, guide, z, plate):
    log_p, log_q = _per_point(model, detach(guide), z, plate, "DReG")
    log_w = log_p.local - log_q.local  # (k, B)
    w = normalised_weights(log_w, axis=0)
    model_part = jnp.sum((w - w**2) * pointwise_density(model, detach(z), plate=plate).local)
    value = log_p.scale * jnp.sum(log_mean_exp(log_w, axis=0)) + jnp.mean(log_p.rest)
    surrogate = log_p.scale * (jnp.sum(w**2 * log_w) + model_part) + jnp.mean(log_p.rest)
    return replace_grad(value, surrogate)


@objective
def VIMCO(model, guide, *args, k: int = 5, plate: str | None = None):
    """The IWAE bound with VIMCO's score-function gradient for non-reparameterized guide sites
    (Mnih & Rezende 2016): each particle's score is weighted by the bound minus a leave-one-out
    baseline; reparameterized sites keep their path gradient. `plate`: per data point, as in
    `IWAE`, each point's particles scored against that point's own bound (a NumPyro guide)."""
    z, log_q = sim(guide, *args, n=k)
    if plate is not None:
        return _vimco_per_point(model, guide, z, plate)
    scores = claim_scores(guide)
    log_w = density(model, z, *args) - log_q
    bound = log_mean_exp(log_w)
    signal = jax.lax.stop_gradient(bound - leave_one_out(log_w))
    return bound + jnp.sum(signal * (scores - jax.lax.stop_gradient(scores)))


@objective
def MIWAE(model, guide, *args, k: int = 5, m: int = 1):
    """The mean of `m` independent IWAE bounds of `k` particles each (Rainforth et al. 2018)."""
    z, log_q = sim(guide, *args, n=k * m)
    log_w = density(model, z, *args) - log_q
    return jnp.mean(log_mean_exp(log_w.reshape(m, k)))


@objective
def PIWAE(model, guide, *args, k: int = 5, m: int = 1):
    """Partially importance weighted (Rainforth et al. 2018): the model is trained on the IWAE bound
    of all k*m draws (the value reported), the guide on MIWAE(k, m) of the same draws. Needs a
    reparameterized guide."""
    z, log_q = sim(guide, *args, n=k * m)
    log_w_model = density(model, detach(z), *args) - detach(log_q)
    log_w_guide = density(detach(model), z, *args) - log_q
    guide_part = jnp.mean(log_mean_exp(log_w_guide.reshape(m, k)))
    return replace_grad(log_mean_exp(log_w_model), log_mean_exp(log_w_model) + guide_part)


@objective
def CIWAE(model, guide, *args, k: int = 5, beta: float = 0.5):
    """beta * ELBO + (1 - beta) * IWAE, both over the same `k` draws (Rainforth et al. 2018)."""
    z, log_q = sim(guide, *args, n=k)
    log_w = density(model, z, *args) - log_q
    return beta * jnp.mean(log_w) + (1 - beta) * log_mean_exp(log_w)

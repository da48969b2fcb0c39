"""Fits of models with enumerated discrete sites against NUTS (NumPyro's, which sums the same
sites out): a 3-component Gaussian mixture and a Dawid-Skene annotation model."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import provi

# each site gets its own infer dict: NumPyro (the NUTS reference) writes into the dict it is given


def mixture(x, centres=(-4.0, 0.0, 4.0)):
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(jnp.array(centres), 1.0).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("n", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(mu[z], sigma), obs=x)


def annotation(labels):
    pi = numpyro.sample("pi", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("annotator", labels.shape[1], dim=-2):
        with numpyro.plate("class", 3, dim=-1):
            beta = numpyro.sample("beta", dist.Dirichlet(jnp.ones(3) + 4.0 * jnp.eye(3)))
    with numpyro.plate("item", labels.shape[0], dim=-2):
        c = numpyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
        with numpyro.plate("position", labels.shape[1], dim=-1):
            numpyro.sample("y", dist.Categorical(beta[jnp.arange(labels.shape[1]), c]), obs=labels)


def _nuts(model, *args):
    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *args)
    return {k: np.asarray(v) for k, v in mcmc.get_samples().items()}


def _compare(res, ref, sites):
    """Means within 0.1 posterior sd of NUTS (plus its Monte Carlo error); sds within 10%, or
    else the fit must say it is not to be trusted (k-hat >= 0.7): right or honestly flagged."""
    draws = res.sample(8000)
    trusted = res.diagnostics().trustworthy
    for site in sites:
        m, sd = ref[site].mean(0), ref[site].std(0)
        err = np.abs(draws[site].mean(0) - m) / sd
        assert np.all(err < 0.1 + 4 / np.sqrt(400)), (site, err)  # NUTS' effective sample size is above 400
        ratio = draws[site].std(0) / sd
        assert np.all(np.abs(ratio - 1) < 0.1) or not trusted, (site, ratio, res.auto)
        assert np.all(np.abs(ratio - 1) < 0.3), (site, ratio)


@pytest.mark.slow
def test_gaussian_mixture_recovers_nuts():
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([rng.normal(-4, 1, 40), rng.normal(0, 1, 60), rng.normal(4, 1, 50)]).astype(np.float32))
    res = provi.fit(mixture, x, progress=False, seed=1)
    _compare(res, _nuts(mixture, x), ("mu", "w", "sigma"))
    z = res.sample(500)["z"]
    assert z.shape == (500, 150) and np.mean(z[:, :40] == 0) > 0.8 and np.mean(z[:, 100:] == 2) > 0.8


@pytest.mark.slow
def test_overlapping_mixture_is_flagged_not_silently_wrong():
    """Components closer than their spread: the posterior of the middle one is far from Gaussian;
    auto's k-hat says so."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([rng.normal(-3, 1, 40), rng.normal(0, 1, 30), rng.normal(3, 1, 50)]).astype(np.float32))
    res = provi.fit(mixture, x, (-3.0, 0.0, 3.0), progress=False, seed=1)
    assert res.correct is None and not res.diagnostics().trustworthy


@pytest.mark.slow
def test_dawid_skene_recovers_nuts():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 60)
    acc = np.array([0.9, 0.75, 0.6, 0.8])
    labels = np.where(rng.random((60, 4)) < acc, truth[:, None], rng.integers(0, 3, (60, 4)))
    labels = jnp.asarray(labels)
    res = provi.fit(annotation, labels, progress=False, seed=2)
    _compare(res, _nuts(annotation, labels), ("pi",))
    c = res.discrete_map(200)["c"]
    assert np.mean(c.reshape(200, -1) == truth[None]) > 0.85

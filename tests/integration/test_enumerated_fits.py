"""Fits of models with enumerated discrete sites against NUTS (NumPyro's, which sums the same
sites out): a 3-component Gaussian mixture and a Dawid-Skene annotation model."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import provi
from provi.examples.enumerated import annotation, annotation_data, mixture, mixture_data

DATA = Path(__file__).parents[1] / "data"


def _reference(name):
    """NUTS moments (4 chains of 5,000 draws, float64; tests/data/make_references.py)."""
    sites = json.loads((DATA / f"{name}_reference.json").read_text())["sites"]
    return {k: (np.asarray(v["mean"]), np.asarray(v["sd"])) for k, v in sites.items()}


def _compare(res, ref, sites):
    """Means within 0.1 posterior sd of NUTS (plus the fit's Monte Carlo error, 8,000 draws); sds
    within 10%, or else the fit must say it is not to be trusted (k-hat >= 0.7): right or honestly
    flagged."""
    draws = res.sample(8000)
    trusted = res.diagnostics().trustworthy
    for site in sites:
        m, sd = ref[site]
        err = np.abs(draws[site].mean(0) - m) / sd
        assert np.all(err < 0.1 + 4 / np.sqrt(8000)), (site, err)
        ratio = draws[site].std(0) / sd
        assert np.all(np.abs(ratio - 1) < 0.1) or not trusted, (site, ratio, res.auto)
        assert np.all(np.abs(ratio - 1) < 0.3), (site, ratio)


@pytest.mark.slow
def test_gaussian_mixture_recovers_nuts():
    x = jnp.asarray(mixture_data())
    res = provi.fit(mixture, x, progress=False, seed=1)
    _compare(res, _reference("mixture"), ("mu", "w", "sigma"))
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
    labels, truth = annotation_data()
    labels = jnp.asarray(labels)
    res = provi.fit(annotation, labels, progress=False, seed=2)
    _compare(res, _reference("dawid_skene"), ("pi",))
    c = res.discrete_map(200)["c"]
    assert np.mean(c.reshape(200, -1) == truth[None]) > 0.85

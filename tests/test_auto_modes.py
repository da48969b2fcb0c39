"""guide="auto" on multimodal posteriors: the modes found from several starts, a mixture weighted
by their masses, against quadrature; label-switched copies are not mixed; the fit saves and loads."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.auto.modes import _relabelled, find_modes
from provi.guides import FullRank, ModeMixture

GRID = np.linspace(-30.0, 30.0, 600_001)


def two_bumps(left: float, right: float, w_right: float):
    """x ~ N(0, 10) times a two-component density: bumps at `left` (sd 0.7) and `right` (sd 0.5)."""

    def log_bumps(x, xp=jnp):
        a = xp.log(w_right) - 0.5 * ((x - right) / 0.5) ** 2 - xp.log(0.5)
        b = xp.log(1 - w_right) - 0.5 * ((x - left) / 0.7) ** 2 - xp.log(0.7)
        return xp.logaddexp(a, b)

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 10.0))
        numpyro.factor("bumps", log_bumps(x))

    lp = log_bumps(GRID, np) - 0.5 * (GRID / 10.0) ** 2
    p = np.exp(lp - lp.max())
    p /= p.sum()
    split = 0.5 * (left + right)
    return model, {"mean": float(GRID @ p), "sd": float(np.sqrt(GRID**2 @ p - (GRID @ p) ** 2)),
                   "right": float(p[GRID > split].sum()), "split": split}


def _check(res, exact, n=20_000):
    x = res.sample(n, seed=5)["x"]
    right = np.mean(x > exact["split"])
    # the fraction: binomial error of n draws, plus 0.01 for the importance-sampled weights
    assert abs(right - exact["right"]) < 4 * np.sqrt(exact["right"] * (1 - exact["right"]) / n) + 0.01, (right, exact)
    assert abs(x.mean() - exact["mean"]) < 4 * exact["sd"] / np.sqrt(n) + 0.05, (x.mean(), exact)
    assert abs(x.std() / exact["sd"] - 1) < 0.05, (x.std(), exact)


def test_two_modes_get_a_mixture_weighted_by_their_masses():
    model, exact = two_bumps(-2.0, 3.0, 0.8)
    res = provi.fit(model, progress=False)
    assert isinstance(res.guide.family, ModeMixture) and res.auto["usable"], res.auto
    w = sorted(res.auto["modes"]["weights"])
    assert abs(w[1] - exact["right"]) < 0.01, (w, exact)
    assert "mixture of full-rank Gaussians over 2 modes" in res.stop.notes[-1]
    _check(res, exact)


def test_a_fit_that_starts_in_the_minor_mode_finds_the_main_one():
    """From zero, Newton climbs to the bump at 1 (a tenth of the mass); a Gaussian there has a small
    k-hat, yet misses 90% of the posterior. The other starts find the bump at -4."""
    model, exact = two_bumps(-4.0, 1.0, 0.1)
    first = provi.fit(model, guide="fullrank", progress=False)
    assert float(first.sample(2000)["x"].mean()) > 0  # the single Gaussian sits in the minor mode
    res = provi.fit(model, progress=False)
    assert isinstance(res.guide.family, ModeMixture), res.auto
    _check(res, exact)


def test_a_mixture_fit_saves_and_loads(tmp_path):
    model, _ = two_bumps(-2.0, 3.0, 0.8)
    res = provi.fit(model, progress=False)
    res.save(tmp_path / "fit")
    back = provi.load(tmp_path / "fit", model)
    assert isinstance(back.guide.family, ModeMixture)
    np.testing.assert_allclose(back.sample(500, seed=1)["x"], res.sample(500, seed=1)["x"], rtol=1e-6)


def exchangeable(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with numpyro.plate("n", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(jnp.array([0.5, 0.5])), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(mu[z], 1.0), obs=x)


@pytest.mark.slow
def test_label_switched_copies_are_not_mixed():
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([rng.normal(-3, 1, 40), rng.normal(3, 1, 40)]).astype(np.float32))
    first = provi.fit(exchangeable, x, guide="fullrank", progress=False)
    found, _ = find_modes(first, seed=0, starts=16)
    assert len(found) >= 2 and _relabelled(first.guide.space, found[0][0], found[1][0])  # both labellings found
    res = provi.fit(exchangeable, x, progress=False)
    assert isinstance(res.guide.family, FullRank), res.auto
    mu = res.sample(2000)["mu"]
    assert np.all(np.abs(mu[:, 0] - mu[:, 1]) > 4)  # one labelling, not an average over both

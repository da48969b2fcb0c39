"""Simulating from the model (`provi.sim(model)`, `provi.with_observed`) and the sleep phase of
reweighted wake-sleep, against exact oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from objective_models import THETA, X, Harness, make_guide, mean_se

import provi
from provi.errors import ObjectiveError


def test_sim_model_draws_the_prior_predictive_and_its_log_joint():
    n = 4000

    def fn(model, guide, x):
        d, log_p = provi.sim(model, x, n=n)
        exact = jax.vmap(lambda di: provi.density(model, {"mu": di["mu"]}, di["x"]))(d)
        return jnp.stack([d["mu"], d["x"][:, 0], d["x"][:, 1], log_p - exact]).T

    h = Harness(make_guide(0.1, 0.4), provi.ELBO())
    draws = np.asarray(jax.jit(lambda k: fn(*_bound(h, k), X))(jax.random.PRNGKey(0)))
    # mu ~ N(theta, 1); x_i = mu + e_i: var 2, covariance 1 between data points
    for col, (mean, var) in enumerate([(THETA, 1.0), (THETA, 2.0), (THETA, 2.0)]):
        m, se = mean_se(draws[:, col])
        assert abs(m - mean) < 4 * se, (col, m, mean)
        assert abs(np.var(draws[:, col]) / var - 1) < 4 * np.sqrt(2 / n)
    c = np.corrcoef(draws[:, 1], draws[:, 2])[0, 1]
    assert abs(c - 0.5) < 4 * (1 - 0.25) / np.sqrt(n)
    np.testing.assert_allclose(draws[:, 3], 0.0, atol=1e-4)  # log_p is the log joint at the draws


def _bound(h, key):
    """(model, guide) bound at a harness's initial parameters, as an objective receives them."""
    from provi.core.bound import BoundGuide, BoundModel, KeyStream

    keys = KeyStream(key)
    model = BoundModel(h.model, h.params["model"], keys, (X,), {})
    guide = BoundGuide(h.guide, h.params["guide"], {}, keys, (X,), {})
    return model, guide


def test_with_observed_swaps_the_data_argument_and_asks_when_it_cannot_tell():
    def fn(model, guide, x):
        d, _ = provi.sim(model, x)
        a, kw = provi.with_observed(model, d, x)
        return a[0] - d["x"]

    h = Harness(make_guide(0.1, 0.4), provi.ELBO())
    np.testing.assert_array_equal(fn(*_bound(h, jax.random.PRNGKey(1)), X), 0.0)

    def transformed(x):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=2.0 * x)

    h2 = Harness(make_guide(0.1, 0.4), provi.ELBO(), mdl=transformed)
    model, _ = _bound(h2, jax.random.PRNGKey(1))
    with pytest.raises(ObjectiveError, match="'x'.*data="):
        provi.with_observed(model, {"mu": 0.0, "x": X}, X)
    a, _ = provi.with_observed(model, {"mu": 0.0, "x": X + 1}, X, data={"x": 0})
    np.testing.assert_array_equal(a[0], X + 1)


def test_sim_model_refuses_subsampled_plates():
    def model(x):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("n", x.shape[0], subsample_size=2) as idx:
            numpyro.sample("x", dist.Normal(mu, 1.0), obs=x[idx])

    def guide(x):
        numpyro.sample("mu", dist.Normal(numpyro.param("loc", 0.0), 1.0))

    with pytest.raises(ObjectiveError, match="subsamples plate"):
        provi.fit(model, X, guide=guide, objective=provi.RWS(k=2, sleep=2), steps=2, progress=False)


def test_sleep_gradient_is_the_expected_score_under_the_model():
    """Sleep only (no wake-q): E_{p(mu)}[d log q(mu) / d(loc, log scale)] with mu ~ N(theta, 1)."""
    a, s = 0.1, 0.4
    _, g = Harness(make_guide(a, s), provi.RWS(k=2, wake_q=False, sleep=50)).run(400)
    exact_loc = (THETA - a) / s**2
    exact_log_scale = ((THETA - a) ** 2 + 1) / s**2 - 1
    for got, want in ((g["guide"]["loc"], exact_loc), (g["guide"]["scale"], exact_log_scale)):
        m, se = mean_se(got)
        assert abs(m - want) < 4 * se, (m, want, se)
    _, g0 = Harness(make_guide(a, s), provi.RWS(k=2, wake_q=False)).run(4)
    np.testing.assert_array_equal(g0["guide"]["loc"], 0.0)  # neither wake-q nor sleep: no guide update


# --- an amortised guide learns the exact posterior of every x from the sleep phase alone --------

PRIOR = 0.3


def _model(x):
    z = numpyro.sample("z", dist.Bernoulli(PRIOR))
    numpyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.5), obs=x)


def _guide(x):
    a, b = numpyro.param("a", 0.0), numpyro.param("b", 0.0)
    numpyro.sample("z", dist.Bernoulli(logits=a + b * x))


def test_sleep_phase_learns_the_amortised_posterior_of_a_discrete_latent():
    """logit p(z = 1 | x) = log(0.3 / 0.7) + 4x / (2 * 1.5^2): linear in x, so the amortised guide
    contains it and E_p(x) KL(p(z | x) || q(z | x)) is minimised there. One observed x cannot
    identify the slope b; the simulated data of the sleep phase can."""
    res = provi.fit(
        _model, jnp.asarray(0.4), guide=_guide, objective=provi.RWS(k=2, wake_q=False, sleep=64),
        optimizer=optax.adam(0.03), steps=4000, seed=0, progress=False, average=True,
    )
    a, b = float(res.params["guide"]["a"]), float(res.params["guide"]["b"])
    assert abs(a - np.log(PRIOR / (1 - PRIOR))) < 0.05 and abs(b - 4 / (2 * 1.5**2)) < 0.05, (a, b)

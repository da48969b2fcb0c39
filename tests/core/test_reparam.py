"""Automatic non-centring (VIP): which sites it takes, that the rewritten model keeps the
posterior, and that guide="auto" uses it on a funnel and a centred hierarchy."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import provi
from provi.core.reparam import decentrable_sites, decentre
from provi.examples import posteriordb


def hierarchy(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))  # constant parameters: left alone
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))  # positive support: left alone
    nu = numpyro.sample("nu", dist.StudentT(4.0, mu, tau))  # a StudentT: df carried over
    with numpyro.plate("J", y.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        z = numpyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Normal(theta + z * nu, 1.0), obs=y)  # observed: left alone


def test_the_sites_taken_are_latent_real_loc_scale_and_hierarchical():
    assert decentrable_sites(hierarchy, (jnp.zeros(3),), {}) == ("nu", "theta")


def test_the_decentred_model_has_the_same_marginal_posterior():
    """With the centredness fixed at its start (0.5), the decentred model's density in (tau,
    x_decentered) pushes forward to the centred one: the marginal of tau agrees (quadrature)."""

    def model():
        tau = numpyro.sample("tau", dist.LogNormal(0.0, 0.5))
        x = numpyro.sample("x", dist.Normal(0.0, tau))
        numpyro.sample("y", dist.Normal(x, 0.3), obs=1.0)

    new = decentre(model, decentrable_sites(model, (), {}))
    tau = np.linspace(0.05, 5.0, 200)
    grid = np.linspace(-12, 12, 2001)

    def marginal(m, site):
        def lp(t, v):
            return numpyro.infer.util.log_density(m, (), {}, {"tau": t, site: v})[0]

        dens = jax.vmap(lambda t: jax.vmap(lambda v: lp(t, v))(jnp.asarray(grid)))(jnp.asarray(tau))
        return np.trapezoid(np.exp(np.asarray(dens, np.float64)), grid, axis=1)

    np.testing.assert_allclose(marginal(new, "x_decentered"), marginal(model, "x"), rtol=2e-3, atol=1e-8)


def test_a_multivariate_normal_is_non_centred_through_its_cholesky_factor():
    """f ~ MVN(1, s^2 C) in a plate of 2: decentred (even when VIP is asked for: a matrix scale
    has no partial centring) into f = 1 + chol(s^2 C) f_decentered, f_decentered ~ N(0, I); prior
    draws of (f - 1) / s have covariance C (within 5 standard errors of each entry)."""
    C = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])

    def model():
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        with numpyro.plate("groups", 2):
            numpyro.sample("f", dist.MultivariateNormal(jnp.ones(3), covariance_matrix=s**2 * jnp.asarray(C)))

    assert decentrable_sites(model, (), {}) == ("f",)
    new = decentre(model, ("f",), centered=None)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(new, 0)).get_trace()
    assert tr["f"]["type"] == "deterministic" and tr["f_decentered"]["fn"].event_shape == (3,)
    assert not [n for n, site in tr.items() if site["type"] == "param"]  # no centredness to learn
    draws = numpyro.infer.Predictive(new, num_samples=20_000)(jax.random.PRNGKey(0))
    w = np.asarray((draws["f"] - 1.0) / draws["s"][:, None, None], np.float64).reshape(-1, 3)
    se = np.sqrt((1.0 + C**2) / w.shape[0])  # sd of a sample covariance of normal pairs
    assert np.all(np.abs(np.cov(w.T) - C) < 5 * se), (np.cov(w.T) - C) / se


def funnel():
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([4]).to_event(1))


def test_auto_non_centres_a_funnel_and_gets_it_right():
    res = provi.fit(funnel, progress=False, seed=0)
    assert any("non-centring" in t for t in res.auto["tried"]) and res.auto["usable"]
    s = res.summary()
    assert abs(s.loc["v", "mean"]) < 3 * 3.0 / np.sqrt(4000) + 0.1
    assert abs(s.loc["v", "sd"] / 3.0 - 1) < 0.05
    assert "x" in res.sample(10)  # reported in the model's own parameterisation


def test_auto_on_centred_eight_schools_is_closer_to_the_reference():
    post = posteriordb.load("eight_schools-eight_schools_centered")
    ref = post.reference_summary()["tau"]
    plain = provi.fit(post.model, *post.args, guide="fullrank", progress=False, seed=0).sample(4000)["tau"]
    res = provi.fit(post.model, *post.args, progress=False, seed=0)
    tau = res.sample(4000)["tau"]
    assert any("non-centring" in t for t in res.auto["tried"])
    assert abs(tau.std() - ref["sd"]) < 0.5 * abs(plain.std() - ref["sd"])  # measured: 0.7 against 2.1


def test_a_model_with_plates_and_no_hierarchical_site_is_left_alone():
    post = posteriordb.load("eight_schools-eight_schools_noncentered")
    assert decentrable_sites(post.model, post.args, {}) == ()


def test_a_non_centred_fit_saves_and_loads_in_the_model_it_was_fitted_to(tmp_path):
    import pytest

    from provi.errors import ModelError

    res = provi.fit(funnel, progress=False, seed=0)
    res.save(tmp_path / "fit")
    back = provi.load(tmp_path / "fit", funnel)
    assert back.reparam == res.reparam and back.reparam["sites"] == ["x"]
    np.testing.assert_allclose(back.summary().loc["v", "sd"], res.summary().loc["v", "sd"], rtol=1e-5)

    def other():
        numpyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ModelError, match="latent sites"):
        provi.load(tmp_path / "fit", other)

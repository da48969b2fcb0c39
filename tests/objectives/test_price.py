"""PriceELBO: the ELBO's gradient with the scale's part from Price's theorem (Hessians at the
draws). Against the exact gradient of a Gaussian target's ELBO (where it has no variance), and
against the reparameterised ELBO's gradient on a logistic regression (unbiased, in standard
errors, with less variance)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import provi
from provi.errors import ObjectiveError
from provi.guides.families import tril_factor

MU = jnp.array([1.0, -2.0, 0.5])
COV = jnp.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 0.5]])


def gaussian():
    numpyro.sample("x", dist.MultivariateNormal(MU, COV))


def logreg(X, y):
    """Logistic regression with an intercept and two weights (three latents, as `perturbed` expects)."""
    b = numpyro.sample("b", dist.Normal(0, 2))
    w = numpyro.sample("w", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("n", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=b + X @ w), obs=y)


def logreg_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    y = (rng.random(40) < 1 / (1 + np.exp(-(0.5 + X @ np.array([1.5, -1.0]))))).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


def perturbed(state, family):
    """The start's parameters moved off the optimum (so the gradient is not zero)."""
    g = dict(state.params["guide"])
    g["loc"] = g["loc"] + jnp.array([0.3, -0.2, 0.4])
    if family == "fullrank":
        g["scale_tril"] = g["scale_tril"] + jnp.array([[0.3, 0.0, 0.0], [0.2, -0.1, 0.0], [-0.4, 0.5, 0.2]])
    else:
        g["log_scale"] = g["log_scale"] + jnp.array([0.3, -0.1, 0.2])
    return {**state.params, "guide": g}


def gradients(alg, params, consts, n, seed=1):
    grad = jax.grad(lambda p, k: alg.loss(p, consts, k)[0])
    return jax.jit(jax.vmap(lambda k: grad(params, k)["guide"]))(jax.random.split(jax.random.PRNGKey(seed), n))


@pytest.mark.parametrize("family", ["fullrank", "meanfield"])
def test_gradient_is_exact_on_a_gaussian_target(family):
    """For a Gaussian target the Hessian is constant and grad log p is linear, so with antithetic
    pairs every draw's gradient is the exact gradient of the ELBO (computed in closed form)."""
    alg = provi.setup(gaussian, guide=family, init="prior", objective=provi.PriceELBO(num_particles=2))
    state = alg.init(jax.random.PRNGKey(0))
    params, shift = perturbed(state, family), state.consts["shift"]  # prior start: P = I, u = shift + v
    prec = jnp.linalg.inv(COV)

    def minus_elbo(g):  # -E_q[log N(shift + v; MU, COV)] - entropy, up to constants
        L = tril_factor(g["scale_tril"]) if family == "fullrank" else jnp.diag(jnp.exp(g["log_scale"]))
        r = g["loc"] + shift - MU
        return 0.5 * jnp.trace(prec @ L @ L.T) + 0.5 * r @ prec @ r - jnp.sum(jnp.log(jnp.diag(L)))

    exact = jax.grad(minus_elbo)(params["guide"])
    got = gradients(alg, params, state.consts, 8)
    for name in exact:
        np.testing.assert_allclose(np.asarray(got[name]), np.broadcast_to(exact[name], got[name].shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [dict(num_particles=2), dict(num_particles=1, antithetic=False)], ids=["antithetic", "plain"])
@pytest.mark.parametrize("family", ["fullrank", "meanfield"])
def test_gradient_is_unbiased_with_less_variance_than_the_reparameterised_one(family, options):
    X, y = logreg_data()
    n = 4000
    means, variances = {}, {}
    for name, obj in (("price", provi.PriceELBO(**options)), ("elbo", provi.ELBO(num_particles=options["num_particles"]))):
        alg = provi.setup(logreg, X, y, guide=family, objective=obj)
        state = alg.init(jax.random.PRNGKey(0))
        g = gradients(alg, perturbed(state, family), state.consts, n, seed=2)
        flat = np.concatenate([np.asarray(v).reshape(n, -1) for _, v in sorted(g.items())], 1)
        means[name], variances[name] = flat.mean(0), flat.var(0)
    se = np.sqrt((variances["price"] + variances["elbo"]) / n)
    assert np.all(np.abs(means["price"] - means["elbo"]) < 4.5 * se + 1e-6), (means, se)
    scale = slice(3, None)  # the scale's entries follow loc's three
    assert np.sum(variances["price"][scale]) < 0.5 * np.sum(variances["elbo"][scale]), variances


def test_refuses_guides_that_are_not_a_gaussian_family():
    for guide in ("lowrank", provi.guides.Particles(4)):
        with pytest.raises(ObjectiveError, match="fullrank"):
            provi.fit(gaussian, guide=guide, objective=provi.PriceELBO(), steps=2, init="prior", progress=False)


def test_auto_fits_the_gaussian_stages_with_it_and_the_others_with_the_path_elbo():
    """guide="auto" with PriceELBO: the full-rank stages use it; the Student-t stage, where it
    does not apply, falls back to the path-derivative ELBO instead of failing."""
    from provi.examples.eight_schools import DATA, model

    res = provi.fit(model, **DATA, objective=provi.PriceELBO(num_particles=4), progress=False)
    assert res.auto["tried"][0].startswith("FullRank")
    assert any("Student-t" in t for t in res.auto["tried"]), res.auto["tried"]
    assert np.isfinite(res.auto["khat"])


def test_minibatch_fit_reaches_the_conjugate_posterior():
    """With minibatches (the stochastic version) and a decreasing step, FB-GVI on PriceELBO
    reaches the exact posterior of a conjugate normal model, a `numpyro.param` moved by Adam
    alongside (`others=`)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(1.5, 1.0, 2000).astype(np.float32))

    def model(x, batch=None):
        shift = numpyro.param("shift", 0.0)  # no effect on the posterior of mu: its gradient is zero
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("n", x.shape[0], subsample_size=batch) as idx:
            numpyro.sample("x", dist.Normal(mu + 0.0 * shift, 1.0), obs=x[idx])

    n = x.shape[0]
    post_var = 1.0 / (1.0 / 100.0 + n)
    post_mean = post_var * float(jnp.sum(x))
    res = provi.fit(model, x, batch=200, guide="fullrank", objective=provi.PriceELBO(num_particles=4),
                    optimizer=provi.optim.fb_gvi(lambda t: 0.5 / (1.0 + t / 20.0), others=optax.adam(1e-2)),
                    steps=600, progress=False)
    draws = res.sample(20_000, seed=1)["mu"]
    sd = np.sqrt(post_var)
    assert abs(draws.mean() - post_mean) < 0.2 * sd, (draws.mean(), post_mean, sd)
    assert 0.85 < draws.std() / sd < 1.15, (draws.std(), sd)

"""provi.engine.start: the Laplace start of a family, and the pure starts."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from scipy import optimize

from provi.core.model import inspect_model
from provi.engine.layout import split_data
from provi.engine.start import initialise_family, point_start
from provi.errors import ModelError
from provi.programs import ModelProgram, make_guide

COV = np.array([[1.0, 0.9], [0.9, 1.0]]) * 0.04


def model():
    numpyro.sample("x", dist.MultivariateNormal(jnp.array([3.0, -1.0]), jnp.asarray(COV)))


def _programs(guide, model=model):
    info = inspect_model(model, (), {})
    data, layout = split_data((), {})
    mp = ModelProgram(model, info)
    return mp, make_guide(guide, info, (), {}, jax.random.PRNGKey(0), None), data, layout


def test_map_start_is_the_laplace_approximation_of_a_gaussian():
    mp, gp, data, layout = _programs("fullrank")
    params, consts, _, notes = initialise_family(gp, mp, {}, data, layout, np.zeros(2, np.uint32), "map", optax.adam(1e-2))
    assert notes == []
    np.testing.assert_allclose(consts["shift"], [3.0, -1.0], atol=1e-4)
    mean, cov = gp.moments(params, consts)  # the family at its start: N(mode, H^-1)
    np.testing.assert_allclose(mean, [3.0, -1.0], atol=1e-4)
    np.testing.assert_allclose(cov, COV, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["prior", "zero"])
def test_point_starts_are_pure(kind):
    mp, gp, data, layout = _programs("meanfield")
    start = point_start(gp, mp, layout, kind, optax.adam(1e-2))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params, _, consts = jax.jit(jax.vmap(lambda k: start(k, {}, data, jnp.zeros(2))))(keys)
    assert consts["shift"].shape == (3, 2)
    if kind == "zero":
        np.testing.assert_array_equal(consts["shift"], 0.0)
    else:
        assert not np.allclose(consts["shift"][0], consts["shift"][1])
    np.testing.assert_allclose(np.exp(params["log_scale"]), 0.1, rtol=1e-6)


@pytest.mark.parametrize("guide", ["meanfield", "fullrank"])
def test_standard_start_is_the_standard_normal(guide):
    """init="standard": the family starts as N(0, I) of the unconstrained space, whatever the key."""
    mp, gp, data, layout = _programs(guide)
    for seed in (0, 1):
        params, consts, _, notes = initialise_family(gp, mp, {}, data, layout, jax.random.PRNGKey(seed), "standard", optax.adam(1e-2))
        mean, cov = gp.moments(params, consts)
        np.testing.assert_array_equal(mean, [0.0, 0.0])
        np.testing.assert_allclose(cov, np.eye(2), rtol=1e-6, atol=1e-7)
        assert notes == []


Y = np.array([1.0, 1.0, 1.0, 1.0, 0.0])  # five Bernoulli observations of the sum a + u1 + u2


def _marked_model(likelihood):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    u = numpyro.sample("u", dist.Normal(jnp.zeros(2), 1.0).to_event(1), infer={"init": "standard"})
    with numpyro.plate("n", Y.shape[0]):
        eta = a + u.sum()
        numpyro.sample("y", dist.Bernoulli(logits=eta) if likelihood == "logit" else dist.Normal(eta, 0.5), obs=Y)


def _start(likelihood, guide):
    mp, gp, data, layout = _programs(guide, lambda: _marked_model(likelihood))
    assert [s.start for s in mp.info.latents] == [None, "standard"]
    params, consts, _, notes = initialise_family(gp, mp, {}, data, layout, jax.random.PRNGKey(0), "map", optax.adam(1e-2))
    assert notes == []
    return gp.moments(params, consts)


@pytest.mark.parametrize("guide", ["meanfield", "fullrank"])
def test_a_site_with_its_own_start_starts_at_the_standard_normal_and_the_rest_at_the_mode(guide):
    """infer={"init": "standard"} on u under a logistic likelihood: q(u) starts at N(0, I),
    uncorrelated with a; a at the joint mode, with the variance 1 / H_aa there. By symmetry the
    mode has a = u1 = u2 = m with m = sum_i (y_i - sigmoid(3 m)); H_aa = 1 + 5 s (1 - s), s = sigmoid(3 m)."""
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    m = optimize.brentq(lambda m: -m + np.sum(Y - sig(3 * m)), -5, 5)
    s = sig(3 * m)
    mean, cov = _start("logit", guide)
    np.testing.assert_allclose(mean, [m, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(cov, np.diag([1 / (1 + 5 * s * (1 - s)), 1.0, 1.0]), rtol=1e-4, atol=1e-6)


def test_a_site_with_its_own_start_keeps_the_laplace_start_where_the_density_is_gaussian_in_it():
    """Under a Gaussian likelihood the Laplace start is the exact posterior: precision
    I + 5 * 11^T / 0.25 and mean precision^-1 1 sum(y) / 0.25, u included."""
    precision = np.eye(3) + 5 * np.ones((3, 3)) / 0.25
    cov = np.linalg.inv(precision)
    mean, q_cov = _start("normal", "fullrank")
    np.testing.assert_allclose(mean, cov @ np.ones(3) * Y.sum() / 0.25, atol=1e-4)
    np.testing.assert_allclose(q_cov, cov, rtol=1e-3, atol=1e-6)


def test_an_unknown_site_start_is_named():
    def bad():
        numpyro.sample("w", dist.Normal(0.0, 1.0), infer={"init": "mode"})

    with pytest.raises(ModelError, match="site 'w'.*infer=.*'init': 'mode'"):
        inspect_model(bad, (), {})


def test_bad_init_is_named():
    mp, gp, data, layout = _programs("meanfield")
    with pytest.raises(ModelError, match="unknown site"):
        initialise_family(gp, mp, {}, data, layout, np.zeros(2, np.uint32), {"y": 1.0}, optax.adam(1e-2))
    with pytest.raises(ValueError, match="unknown init"):
        initialise_family(gp, mp, {}, data, layout, np.zeros(2, np.uint32), "mode", optax.adam(1e-2))

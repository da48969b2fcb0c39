"""provi.engine.start: the Laplace start of a family, and the pure starts."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from provi.core.model import inspect_model
from provi.engine.layout import split_data
from provi.engine.start import initialise_family, point_start
from provi.errors import ModelError
from provi.programs import ModelProgram, make_guide

COV = np.array([[1.0, 0.9], [0.9, 1.0]]) * 0.04


def model():
    numpyro.sample("x", dist.MultivariateNormal(jnp.array([3.0, -1.0]), jnp.asarray(COV)))


def _programs(guide):
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


def test_bad_init_is_named():
    mp, gp, data, layout = _programs("meanfield")
    with pytest.raises(ModelError, match="unknown site"):
        initialise_family(gp, mp, {}, data, layout, np.zeros(2, np.uint32), {"y": 1.0}, optax.adam(1e-2))
    with pytest.raises(ValueError, match="unknown init"):
        initialise_family(gp, mp, {}, data, layout, np.zeros(2, np.uint32), "mode", optax.adam(1e-2))

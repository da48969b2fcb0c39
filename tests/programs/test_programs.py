"""provi.programs: the declared program interface and its three implementations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.core.program import AbstractGuide
from provi.programs import FamilyGuide, NumPyroGuide, guide_from_spec


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, s), obs=y)


Y = jnp.array([0.5, 1.5, 2.0])


def guide(y):
    loc = numpyro.param("loc", 0.0)
    numpyro.sample("mu", dist.Normal(loc, 1.0))
    numpyro.sample("s", dist.LogNormal(0.0, 0.5))


def test_a_guide_program_must_declare_everything():
    class Incomplete(AbstractGuide):
        shapes: dict
        plates: dict

    with pytest.raises(TypeError, match="abstract"):
        Incomplete({}, {})


@pytest.mark.parametrize("which", ["meanfield", "fullrank", "numpyro"])
def test_sim_and_log_density_agree(which):
    alg = provi.setup(model, Y, guide=guide if which == "numpyro" else which, init="prior")
    state = alg.init(jax.random.PRNGKey(0))
    g = alg.guide
    assert isinstance(g, NumPyroGuide if which == "numpyro" else FamilyGuide)
    z, log_q = g.sim(state.params["guide"], state.consts, jax.random.PRNGKey(1), 4, alg.args, alg.kwargs, [])
    assert set(z) == set(g.sites) and z["s"].shape == (4,)
    np.testing.assert_allclose(g.log_density(state.params["guide"], state.consts, z, alg.args, alg.kwargs), log_q, rtol=1e-4)
    assert set(g.latents) == {"mu", "s"} and hash(g) == hash(g) and g == g


def test_spec_rebuilds_the_family():
    alg = provi.setup(model, Y, guide=provi.guides.LowRank(rank=1))
    family = guide_from_spec(alg.guide.spec())
    assert family == provi.guides.LowRank(rank=1)
    with pytest.raises(ValueError, match="NumPyro guide"):
        guide_from_spec({"kind": "numpyro", "name": "guide"})


def test_programs_are_equinox_modules_compared_by_identity():
    a = provi.setup(model, Y, guide="meanfield").guide
    b = provi.setup(model, Y, guide="meanfield").guide
    assert isinstance(a, eqx.Module) and a != b

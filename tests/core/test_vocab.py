"""provi.core.vocab on bound programs: draws, densities, detaching, and the ledger of score terms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import provi
from provi.core.bound import BoundGuide, BoundModel, KeyStream, ScoreTerm
from provi.errors import ObjectiveError


def model():
    numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("k", dist.Bernoulli(0.3))


def guide():
    loc = numpyro.param("loc", 0.5)
    p = numpyro.param("p", 0.4, constraint=constraints.unit_interval)
    numpyro.sample("mu", dist.Normal(loc, 1.0))
    numpyro.sample("k", dist.Bernoulli(p), infer={"estimator": provi.estimators.Reinforce()})


def bound():
    alg = provi.setup(model, guide=guide)
    params = alg.init(jax.random.PRNGKey(0)).params
    keys = KeyStream(jax.random.PRNGKey(1))
    return (BoundModel(alg.model, params["model"], keys, (), {}),
            BoundGuide(alg.guide, params["guide"], {}, keys, (), {}), params)


def test_sim_and_density_agree():
    m, g, _ = bound()
    z, log_q = provi.sim(g, n=5)
    assert z["mu"].shape == (5,) and log_q.shape == (5,)
    np.testing.assert_allclose(provi.density(g, z), log_q, rtol=1e-5)
    expected = dist.Normal(0.0, 1.0).log_prob(z["mu"]) + dist.Bernoulli(0.3).log_prob(z["k"])
    np.testing.assert_allclose(provi.density(m, z), expected, rtol=1e-5)
    np.testing.assert_allclose(provi.density(m, z, sites=("mu",)), dist.Normal(0.0, 1.0).log_prob(z["mu"]), rtol=1e-5)


def test_score_terms_are_recorded_claimed_and_declared():
    m, g, _ = bound()
    z, _ = provi.sim(g, n=3)
    assert [type(t) for t in g.ledger] == [ScoreTerm] and g.ledger[0].site == "k"
    assert provi.core.vocab.pending_scores(g) == ("k",)
    assert g.ledger[0].per_element  # REINFORCE without a baseline takes per-element signals
    terms = jnp.arange(3.0)
    assert float(provi.particle_mean(g, terms)) == pytest.approx(1.0)
    assert g.ledger[0].signal is not None and g.ledger[0].signal[0] is terms
    s = provi.claim_scores(g)
    assert s.shape == (3,) and not g.ledger
    np.testing.assert_allclose(s, dist.Bernoulli(0.4).log_prob(z["k"]), rtol=1e-5)


def test_detach_cuts_parameters_not_values():
    m, g, params = bound()

    def f(p):
        gg = BoundGuide(g.program, p, {}, KeyStream(jax.random.PRNGKey(2)), (), {})
        return provi.density(provi.detach(gg), {"mu": jnp.array(0.3), "k": jnp.array(1.0)})

    grads = jax.grad(f)(params["guide"])
    assert all(float(jnp.abs(x)) == 0.0 for x in jax.tree.leaves(grads))


def test_vocabulary_errors_are_named():
    m, g, _ = bound()
    with pytest.raises(TypeError, match="provi.sim takes"):
        provi.sim("guide")
    with pytest.raises(ObjectiveError, match="one term per particle"):
        provi.particle_mean(g, jnp.zeros((2, 2)))
    with pytest.raises(provi.errors.ModelError, match="unknown site"):
        provi.density(m, {"nope": jnp.zeros(())}, sites=("nope",))

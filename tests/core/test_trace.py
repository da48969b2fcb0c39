"""provi.core.trace: one place that runs programs and sums scaled log densities."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer.util import log_density

from provi.core.trace import abstract_trace, base_distribution, constrain_params, run, site_log_prob, sum_log_prob, unconstrain_params


def model(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    s = numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("n", 10, subsample_size=4):
        numpyro.sample("x", dist.Normal(mu, s), obs=x)


X = jnp.array([0.1, -0.3, 1.2, 0.5])


def test_sum_log_prob_is_numpyros_log_density_with_subsample_scale():
    values = {"mu": jnp.array(0.4), "s": jnp.array(1.3)}
    key = jax.random.PRNGKey(0)
    tr = run(model, key, (X,), {}, values)
    expected, _ = log_density(numpyro.handlers.seed(model, key), (X,), {}, values)
    np.testing.assert_allclose(sum_log_prob(tr), expected, rtol=1e-6)
    by_hand = (dist.Normal(0, 2).log_prob(0.4) + dist.LogNormal(0, 1).log_prob(1.3)
               + 10 / 4 * jnp.sum(dist.Normal(0.4, 1.3).log_prob(X)))
    np.testing.assert_allclose(sum_log_prob(tr), by_hand, rtol=1e-6)
    np.testing.assert_allclose(sum_log_prob(tr, sites=("mu",)), dist.Normal(0, 2).log_prob(0.4), rtol=1e-6)
    np.testing.assert_allclose(site_log_prob(tr["x"], scaled=False), jnp.sum(dist.Normal(0.4, 1.3).log_prob(X)), rtol=1e-6)


def test_abstract_trace_computes_nothing():
    tr = abstract_trace(model, (np.asarray(X),), {})
    assert set(tr) >= {"mu", "s", "x", "n"}
    assert isinstance(tr["mu"]["value"], jax.core.Tracer)  # a prior draw, never computed


def test_base_distribution_strips_wrappers():
    assert type(base_distribution(dist.Normal(0, 1).expand([3]).to_event(1).mask(False))) is dist.Normal
    assert type(base_distribution(dist.LogNormal(0, 1))) is dist.Normal


def test_params_round_trip():
    spec = {"scale": (jnp.array([0.5, 2.0]), dist.constraints.positive), "w": ({"a": jnp.ones(2)}, dist.constraints.real)}
    back = constrain_params(unconstrain_params(spec), spec)
    np.testing.assert_allclose(back["scale"], [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(back["w"]["a"], [1.0, 1.0])

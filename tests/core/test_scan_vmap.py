"""A NumPyro `scan` whose carry is the same at every step runs as one `vmap` (`vscan`), with the
results of `lax.scan`; a carry that changes keeps the loop. Enumerated categorical sites take
their log probabilities without a gather; a chain's factors are those of `log_prob`."""

import contextlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan

import provi
from provi.core import chain
from provi.core.bound import KeyStream
from provi.core.scan_vmap import vmapped_scans, vscan

XS = jnp.linspace(-1.0, 2.0, 7)


def _loops(f, init, xs):
    """The primitives of `vscan(f, init, xs)`'s jaxpr that are loops."""
    jaxpr = jax.make_jaxpr(lambda c, x: vscan(f, c, x))(init, xs)
    return [e.primitive.name for e in jaxpr.eqns if e.primitive.name in ("scan", "while")]


def _wrapped(step):
    """A step in the form NumPyro's `scan` hands to `lax.scan`: ((i, key, carry), x)."""

    def f(wrapped, x):
        i, key, carry = wrapped
        key, sub = jax.random.split(key)
        carry, y = step(i, sub, carry, x)
        return (i + 1, key, carry), y

    return f


@pytest.mark.parametrize("name, step, vectorised", [
    ("constant", lambda i, k, c, x: (jnp.arange(3.0), c * x + i), True),
    ("accumulates", lambda i, k, c, x: (c + x, c * x), False),
    ("counts", lambda i, k, c, x: (c + 1, c * x), False),
    ("by step", lambda i, k, c, x: (jnp.full(3, i, jnp.float32), c * x), False),
])
def test_vscan_runs_constant_carries_as_one_vmap_and_matches_the_loop(name, step, vectorised):
    f = _wrapped(step)
    init = (0, jax.random.PRNGKey(0), jnp.arange(3.0))
    assert (_loops(f, init, XS) == []) == vectorised, name
    (i, _, carry), ys = vscan(f, init, XS)
    (i_ref, _, carry_ref), ys_ref = jax.lax.scan(f, init, XS)
    assert int(i) == int(i_ref) == XS.shape[0]
    np.testing.assert_allclose(carry, carry_ref)
    np.testing.assert_allclose(ys, ys_ref)


def test_vscan_keeps_the_loop_for_reversed_scans():
    f = _wrapped(lambda i, k, c, x: (jnp.arange(3.0), c * x + i))
    init = (0, jax.random.PRNGKey(0), jnp.arange(3.0))
    jaxpr = jax.make_jaxpr(lambda c, x: vscan(f, c, x, reverse=True))(init, XS)
    assert any(e.primitive.name == "scan" for e in jaxpr.eqns)


def test_vmapped_scans_restores_numpyro_on_error():
    module = sys.modules["numpyro.contrib.control_flow.scan"]  # the module, not the function of that name
    before = module.lax
    with pytest.raises(RuntimeError), vmapped_scans():
        assert module.lax is not before
        raise RuntimeError("inside")
    assert module.lax is before


OBS = jnp.array([0.1, -0.3, 1.2, 1.9, 2.2, 0.4, -0.1, 1.7])


def hmm_logits(obs):
    shift = numpyro.sample("shift", dist.Normal(0.0, 1.0))
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.5, 0.0], [-1.0, 0.5, 1.0]]) + shift * jnp.eye(3)

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(logits=logits[z_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(jnp.array([0.0, 1.0, 2.0])[z], 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


def hmm_probs(obs):
    stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(jnp.array([0.0, 2.0])[z], 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


@pytest.mark.parametrize("model, values", [(hmm_logits, {"shift": jnp.array(0.7)}), (hmm_probs, {"stay": jnp.array(0.8)})])
def test_chain_factors_are_those_of_log_prob_in_a_loop(model, values, monkeypatch):
    def factors(v):
        c = chain.chain_factors(model, jax.random.PRNGKey(0), (OBS,), {}, v, 1)
        return c.init, c.trans, chain.forward(c)[1]

    fast = factors(values)
    grad_fast = jax.grad(lambda v: factors(v)[2])(values)
    monkeypatch.setattr(chain, "_support_log_prob", lambda name, site: None)  # every site by log_prob
    monkeypatch.setattr(chain, "vmapped_scans", contextlib.nullcontext)  # NumPyro's loop
    slow = factors(values)
    grad_slow = jax.grad(lambda v: factors(v)[2])(values)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for k in values:
        np.testing.assert_allclose(grad_fast[k], grad_slow[k], rtol=1e-5)


def test_a_carry_that_reads_the_data_keeps_the_loop_and_the_density_is_exact():
    """An autoregressive HMM: the scan carries the state, the last observation and a counter, so
    `vscan` keeps NumPyro's loop; the density and its gradient match a hand-written forward
    algorithm."""
    y = jnp.asarray(np.random.default_rng(0).normal(size=30).cumsum() * 0.3, jnp.float32)

    def model(y):
        stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
        trans = jnp.stack([jnp.stack([stay, 1 - stay]), jnp.stack([1 - stay, stay])])

        def step(carry, y_t):
            z_prev, y_prev, t = carry
            z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer={"enumerate": "parallel"})
            numpyro.sample("y", dist.Normal(jnp.array([0.0, 1.0])[z] + 0.5 * y_prev, 0.5), obs=y_t)
            return (z, y_t, t + 1), None

        scan(step, (0, 0.0, 0), y)

    def forward(stay):
        trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])
        prev = jnp.concatenate([jnp.zeros(1), y[:-1]])
        emit = dist.Normal(jnp.array([0.0, 1.0]) + 0.5 * prev[:, None], 0.5).log_prob(y[:, None])
        alpha = jnp.log(trans[0]) + emit[0]
        for t in range(1, y.shape[0]):
            alpha = jax.nn.logsumexp(alpha[:, None] + jnp.log(trans), 0) + emit[t]
        return jax.nn.logsumexp(alpha) + dist.Beta(4.0, 1.0).log_prob(stay)

    alg = provi.setup(model, y, guide="meanfield", init="prior")
    density = lambda s: alg.model.log_density({}, {"stay": s}, (y,), {}, KeyStream(jax.random.PRNGKey(0)))  # noqa: E731
    for stay in (0.3, 0.8):
        s = jnp.array(stay)
        np.testing.assert_allclose(density(s), forward(s), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(density)(s), jax.grad(forward)(s), rtol=1e-4)

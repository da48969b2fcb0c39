"""The public step API: `provi.setup` -> pure `init` and `step`, and its agreement with `provi.fit`."""

import jax
import numpy as np
import optax
import pytest

import provi
from provi.engine import loop_keys, seed_keys


def test_scanned_step_reduces_the_loss(es):
    model, data = es
    alg = provi.setup(model, *data, guide="meanfield", init="prior", optimizer=optax.adam(1e-2))
    state = alg.init(jax.random.PRNGKey(0))
    state, info = jax.jit(lambda s, ks: jax.lax.scan(alg.step, s, ks))(state, jax.random.split(jax.random.PRNGKey(1), 3000))
    losses = np.asarray(info.loss)
    assert losses.shape == (3000,) and np.all(np.isfinite(losses))
    first, last = losses[:200], losses[-200:]
    se = np.sqrt(np.var(first) / 200 + np.var(last) / 200)
    assert np.mean(first) - np.mean(last) > 4 * se  # a real decrease, in standard errors
    assert int(state.step) == 3000


def test_scanned_step_matches_fit_step_for_step(es):
    """With fit's keys (`seed_keys`, `loop_keys`), init="prior", no early stop and no averaging, a
    scanned `step` is the fit's loop: the same losses and parameters, up to float32 rounding
    (the fit's loop is one while_loop compiled at -O1, the scan another program)."""
    model, data = es
    n, seed = 400, 3
    res = provi.fit(model, *data, guide="meanfield", init="prior", early_stop=False, average=False, steps=n, seed=seed, progress=False)
    alg = provi.setup(model, *data, guide="meanfield", init="prior", seed=seed)
    k_init, k_loop = seed_keys(seed)
    state = alg.init(k_init)
    state, info = jax.jit(lambda s, ks: jax.lax.scan(alg.step, s, ks))(state, loop_keys(k_loop, n))
    np.testing.assert_allclose(np.asarray(info.loss), res.losses, rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(res.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_typed_keys_give_what_their_key_data_gives(es):
    """`jax.random.key` (typed) and `jax.random.PRNGKey` (raw uint32) keys with the same bits start
    and step the same, under jit and vmap alike."""
    model, data = es
    alg = provi.setup(model, *data, guide="meanfield", init="prior")
    typed, raw = jax.random.key(3), jax.random.PRNGKey(3)
    a, b = alg.init(typed), alg.init(raw)
    np.testing.assert_array_equal(a.consts["shift"], b.consts["shift"])
    step = jax.jit(alg.step)
    (a, ia), (b, ib) = step(a, jax.random.key(4)), step(b, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(ia.loss, ib.loss)
    states, info = jax.vmap(alg.step)(jax.vmap(alg.init)(jax.random.split(typed, 2)), jax.random.split(jax.random.key(5), 2))
    assert info.loss.shape == (2,) and np.all(np.isfinite(info.loss))


def test_init_and_step_vmap_over_seeds(es):
    model, data = es
    alg = provi.setup(model, *data, guide="fullrank", init="prior")
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    states = jax.vmap(alg.init)(keys)
    assert states.params["guide"]["loc"].shape == (4, 10) and states.consts["shift"].shape == (4, 10)
    assert not np.allclose(states.consts["shift"][0], states.consts["shift"][1])  # the prior draws differ
    one = alg.init(keys[1])  # the same start outside vmap (compiled) as inside (traced)
    np.testing.assert_allclose(states.consts["shift"][1], one.consts["shift"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(states.params["guide"]["scale_tril"][1], one.params["guide"]["scale_tril"], rtol=1e-5, atol=1e-6)
    new, info = jax.vmap(alg.step)(states, keys)
    assert info.loss.shape == (4,) and np.all(np.isfinite(info.loss))
    assert np.all(np.asarray(new.step) == 1)


def test_state_to_result(es):
    model, data = es
    alg = provi.setup(model, *data, guide="meanfield")  # init="map": the Laplace start, on the host
    state = alg.init(jax.random.PRNGKey(0))
    step = jax.jit(alg.step)
    losses = []
    for key in jax.random.split(jax.random.PRNGKey(1), 300):
        state, info = step(state, key)
        losses.append(float(info.loss))
    res = provi.FitResult.from_state(alg, state, losses)
    draws = res.sample(200)
    assert draws["theta"].shape == (200, 8) and np.all(draws["tau"] > 0)
    assert res.stop.steps == 300 and len(res.losses) == 300
    assert np.isfinite(res.diagnostics(2000).khat)


def test_numpyro_guide_with_estimator_state():
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    def model():
        numpyro.sample("k", dist.Bernoulli(0.3))

    def guide():
        p = numpyro.param("p", 0.5, constraint=constraints.unit_interval)
        numpyro.sample("k", dist.Bernoulli(p), infer={"estimator": provi.estimators.Reinforce(baseline=provi.estimators.RunningAverage())})

    alg = provi.setup(model, guide=guide, objective=provi.ELBO(num_particles=4))
    state = alg.init(jax.random.PRNGKey(0))
    assert set(state.params) == {"model", "guide", "estimators"}
    state, info = jax.jit(alg.step)(state, jax.random.PRNGKey(1))
    assert float(state.params["estimators"]["k"]["weight"]) > 0  # the running average advanced


def test_bad_options_are_named(es):
    model, data = es
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        provi.setup(model, *data, optimizer="adam")
    with pytest.raises(TypeError, match="objective must be a provi objective"):
        provi.setup(model, *data, objective="elbo")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        provi.fit(model, *data, seed=-1, progress=False)
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        provi.fit(model, *data, guide="meanfield", optimizer="adam", progress=False)


@pytest.mark.parametrize("seed", [0, 1, 101, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**40 + 3])
def test_host_key_is_the_key_prngkey_makes(seed):
    """A result's draws take their key from `host_key`, made without a compiled program: the
    same key data as `jax.random.PRNGKey(seed)`, so draws are as they were."""
    from provi.engine.step import host_key

    np.testing.assert_array_equal(host_key(seed), np.asarray(jax.random.PRNGKey(seed)))
    assert host_key(seed).dtype == np.uint32

"""State an objective carries between steps (`provi.running_average`): the exact bias-corrected
average, chunk- and checkpoint-free, kept out of the optimiser and the iterate average; refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import provi
from provi import defaults
from provi.errors import ObjectiveError

DECAY = 0.8


def model():
    numpyro.sample("z", dist.Normal(1.0, 2.0))


def _elbo(model, guide):
    z, log_q = provi.sim(guide, n=2)
    return jnp.mean(provi.density(model, z) - log_q)


@provi.objective(carries=True)
def counting_elbo(model, guide):
    """The ELBO, and the running average of the step counter (and of its square, a vector)."""
    t = jnp.asarray(provi.step_count(guide) if provi.step_count(guide) is not None else 0, jnp.float32)
    provi.running_average(guide, "t", t, DECAY)
    provi.running_average(guide, "t_sq", jnp.stack([t, t**2]), DECAY)
    return _elbo(model, guide)


def _oracle(values):
    """sum_s d^(T-1-s) v_s / sum_s d^(T-1-s): the bias-corrected exponential average."""
    w = DECAY ** np.arange(len(values))[::-1]
    return np.tensordot(w, np.asarray(values, np.float64), 1) / w.sum()


def _average(state, name):
    s = state["objective"][name]
    return np.asarray(s["total"]) / np.asarray(s["weight"])


def test_the_average_is_exact_and_free_of_chunks_and_the_optimiser(monkeypatch):
    steps = 130
    monkeypatch.setattr(defaults, "FIXED_CHUNK", 50)
    res = provi.fit(model, guide="meanfield", objective=counting_elbo, optimizer=optax.adamw(0.05, weight_decay=0.5),
                    steps=steps, progress=False, early_stop=False, init="prior")
    t = np.arange(steps)
    np.testing.assert_allclose(_average(res.params, "t"), _oracle(t), rtol=1e-5)
    np.testing.assert_allclose(_average(res.params, "t_sq"), _oracle(np.stack([t, t**2], 1)), rtol=1e-5)
    # the same steps through the public step API, one at a time: the same state and the same losses
    alg = provi.setup(model, guide="meanfield", objective=counting_elbo, optimizer=optax.adamw(0.05, weight_decay=0.5), init="prior")
    state = alg.init(jax.random.PRNGKey(0))
    assert set(state.params) == {"model", "guide", "objective"}
    step = jax.jit(alg.step)
    for i in range(3):
        state, _ = step(state, jax.random.PRNGKey(i))
    np.testing.assert_allclose(_average(state.params, "t"), _oracle([0, 1, 2]), rtol=1e-6)
    assert float(state.params["objective"]["t"]["weight"]) == pytest.approx(1 - DECAY**3)


def test_the_guide_moves_as_without_the_state():
    """Carrying state changes nothing else: the guide's parameters equal those of the same ELBO
    without running averages, step for step."""
    plain = provi.objective(lambda model, guide: _elbo(model, guide))
    opts = dict(guide="meanfield", optimizer=optax.adam(0.05), steps=60, progress=False, early_stop=False, init="prior", seed=1)
    a, b = provi.fit(model, objective=counting_elbo, **opts), provi.fit(model, objective=plain, **opts)
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(jax.tree.leaves(a.params["guide"]), jax.tree.leaves(b.params["guide"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_restores_the_running_state(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "FIXED_CHUNK", 50)
    opts = dict(guide="meanfield", objective=counting_elbo, steps=200, progress=False, early_stop=False, init="prior", seed=2)
    ref = provi.fit(model, **opts)
    path = tmp_path / "fit.ckpt"
    provi.fit(model, checkpoint=path, checkpoint_every=2, **{**opts, "steps": 100})
    res = provi.fit(model, resume=path, checkpoint=path, checkpoint_every=2, **opts)
    np.testing.assert_allclose(_average(res.params, "t"), _average(ref.params, "t"), rtol=1e-6)
    np.testing.assert_allclose(_average(res.params, "t"), _oracle(np.arange(200)), rtol=1e-5)


def test_outside_a_loop_the_average_is_the_value_and_undeclared_state_is_refused():
    res = provi.fit(model, guide="meanfield", objective=counting_elbo, steps=20, progress=False, init="prior")
    mean, se = res.evaluate(counting_elbo, n=200)  # no loop: the average is this evaluation's value
    assert np.isfinite(mean) and se > 0

    @provi.objective
    def undeclared(model, guide):
        provi.running_average(guide, "x", jnp.ones(()), 0.5)
        return _elbo(model, guide)

    with pytest.raises(ObjectiveError, match="carries=True"):
        provi.fit(model, guide="meanfield", objective=undeclared, steps=5, progress=False)

    @provi.objective(carries=True)
    def twice(model, guide):
        provi.running_average(guide, "x", jnp.ones(()), 0.5)
        provi.running_average(guide, "x", jnp.ones(()), 0.5)
        return _elbo(model, guide)

    with pytest.raises(ObjectiveError, match="used twice"):
        provi.fit(model, guide="meanfield", objective=twice, steps=5, progress=False)
    with pytest.raises(ValueError, match="decay"):
        provi.fit(model, guide="meanfield", objective=provi.objective(carries=True)(
            lambda m, g: provi.running_average(g, "x", jnp.zeros(()), 1.0) + _elbo(m, g)), steps=5, progress=False)

"""Subsampled plates: model and guide share one set of indices per step; the minibatch ELBO
gradient is unbiased for the full-data gradient (exact oracle, tolerance in standard errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import provi
from provi.programs import make_guide
from provi.core import plates as sub
from provi.core.model import inspect_model
from provi.errors import ModelError
from provi.programs import ModelProgram
from provi.engine.layout import split_data
from provi.engine.loss import make_loss

N, B = 40, 8
Y = jnp.asarray(np.random.default_rng(0).normal(size=N), dtype=jnp.float32)


def local_model(y, b=None):
    m = numpyro.param("m", 0.3)
    with numpyro.plate("data", y.shape[0], subsample_size=b) as idx:
        z = numpyro.sample("z", dist.Normal(m, 1.0))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y[idx])


def local_guide(y, b=None):
    loc = numpyro.param("loc", jnp.linspace(-1.0, 1.0, y.shape[0]))
    with numpyro.plate("data", y.shape[0], subsample_size=b) as idx:
        numpyro.sample("z", dist.Normal(loc[idx], 0.5))


def _grads(b, n_keys):
    """Per-key gradients of the loss (negative ELBO) at the initial parameters."""
    args, kwargs = (Y,), {"b": b}
    info = inspect_model(local_model, args, kwargs)
    mp = ModelProgram(local_model, info)
    gp = make_guide(local_guide, info, args, kwargs, jax.random.PRNGKey(0), None)
    data, layout = split_data(args, kwargs)
    loss = make_loss(mp, gp, provi.ELBO(), layout)
    params = {"model": mp.init_params(), "guide": gp.init_params()}
    g = jax.jit(jax.vmap(jax.grad(lambda p, k: loss(p, {}, k, data)[0]), in_axes=(None, 0)))
    return params, g(params, jax.random.split(jax.random.PRNGKey(1), n_keys))


def _exact_grad(params):
    """The exact gradient of the loss (-ELBO): with z_i = loc_i + eps_i / 2, the pathwise derivative
    of log p is (m - z_i) + (y_i - z_i) for loc_i and sum_i (z_i - m) for m; log q's is zero."""
    loc, m = params["guide"]["loc"], params["model"]["m"]
    return {"loc": -((m - loc) + (Y - loc)), "m": -jnp.sum(loc - m)}


@pytest.mark.parametrize("exact_fraction", [sub.EXACT_SUBSAMPLE_FRACTION, 0.5], ids=["without-replacement", "with-replacement"])
def test_minibatch_gradient_unbiased(monkeypatch, exact_fraction):
    assert B / N >= sub.EXACT_SUBSAMPLE_FRACTION  # the default draws this minibatch without replacement
    monkeypatch.setattr(sub, "EXACT_SUBSAMPLE_FRACTION", exact_fraction)
    params, g = _grads(B, 4000)
    want = _exact_grad(params)
    for name, got in (("loc", g["guide"]["loc"]), ("m", g["model"]["m"])):
        mean, se = np.mean(got, 0), np.std(got, 0) / np.sqrt(got.shape[0])
        assert np.all(np.abs(mean - np.asarray(want[name])) < 4.5 * se + 1e-6), name


def test_full_data_gradient_matches_oracle():
    params, g = _grads(None, 2000)
    want = _exact_grad(params)
    got = g["guide"]["loc"]
    se = np.std(got, 0) / np.sqrt(got.shape[0])
    assert np.all(np.abs(np.mean(got, 0) - want["loc"]) < 4.5 * se + 1e-6)


def test_shared_indices_across_programs_and_seeds():
    key = jax.random.PRNGKey(3)
    with sub.SharedSubsample(key=key):
        tm = handlers.trace(handlers.seed(local_model, 0)).get_trace(Y, b=B)
        tg = handlers.trace(handlers.seed(local_guide, 1)).get_trace(Y, b=B)
    np.testing.assert_array_equal(tm["data"]["value"], tg["data"]["value"])
    assert len(set(np.asarray(tm["data"]["value"]).tolist())) == B  # without replacement
    with sub.SharedSubsample(key=jax.random.PRNGKey(4)):
        other = handlers.trace(handlers.seed(local_model, 0)).get_trace(Y, b=B)
    assert not np.array_equal(other["data"]["value"], tm["data"]["value"])


def test_unsubsampled_plate_untouched():
    with sub.SharedSubsample(key=jax.random.PRNGKey(0)):
        tr = handlers.trace(handlers.seed(local_model, 0)).get_trace(Y)
    np.testing.assert_array_equal(tr["data"]["value"], np.arange(N))


def test_inclusion_is_uniform():
    keys = jax.random.split(jax.random.PRNGKey(0), 3000)
    for size in (50, 10**6):
        idx = jax.vmap(lambda k: sub.subsample_indices(k, size, 10))(keys)
        if size == 50:
            counts = np.bincount(np.asarray(idx).ravel(), minlength=size)
            p = 10 / size  # each index in each draw with probability B/N
            se = np.sqrt(3000 * p * (1 - p))
            assert np.all(np.abs(counts - 3000 * p) < 5 * se)
        else:
            assert int(idx.min()) >= 0 and int(idx.max()) < size
            assert abs(float(np.mean(idx)) - (size - 1) / 2) < 5 * size / np.sqrt(12 * idx.size)


def test_minibatches_below_an_eighth_of_the_plate_are_drawn_with_replacement():
    """At B / N >= 1/8 never a repeated index; below (O(B) per step instead of O(N)) repeats occur
    as often as with-replacement draws make them: P(10 distinct of 100) = 0.628."""
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)
    exact = np.asarray(jax.vmap(lambda k: sub.subsample_indices(k, 80, 10))(keys))
    assert all(len(set(row)) == 10 for row in exact.tolist())
    loose = np.asarray(jax.vmap(lambda k: sub.subsample_indices(k, 100, 10))(keys))
    distinct = np.mean([len(set(row)) == 10 for row in loose.tolist()])
    p = np.prod(1 - np.arange(10) / 100)
    assert abs(distinct - p) < 4 * np.sqrt(p * (1 - p) / len(keys))


def test_family_guide_rejects_local_latents_in_subsampled_plate():
    with pytest.raises(ModelError, match="inside the subsampled plate 'data'"):
        provi.fit(local_model, Y, b=B, guide="meanfield", steps=10, progress=False)


def _logreg(x, y, b=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("n", x.shape[0], subsample_size=b) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])


def test_subsampled_fit_close_to_full_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    y = (rng.random(2000) < 1 / (1 + np.exp(-x @ np.array([1.0, -0.5])))).astype(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)
    full = provi.fit(_logreg, x, y, guide="meanfield", steps=1500, progress=False)
    mini = provi.fit(_logreg, x, y, b=200, guide="meanfield", steps=1500, progress=False)
    m_full, s_full = full.sample(4000)["w"].mean(0), full.sample(4000)["w"].std(0)
    m_mini = mini.sample(4000)["w"].mean(0)
    assert np.all(np.abs(m_full - m_mini) < 0.5 * s_full)

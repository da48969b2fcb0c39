"""Streaming minibatches from a loader into the compiled loop (`provi.fit(..., batches=...)`)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.engine import checkpoint as ckpt_io
from provi.engine.data import Batches, Feeder

from provi import defaults  # noqa: E402

rng = np.random.default_rng(0)
N = 1200
X = rng.normal(size=(N, 2)).astype(np.float32)
Y = (rng.random(N) < 1 / (1 + np.exp(-X @ np.array([1.5, -1.0])))).astype(np.float32)


def stream_model(x, y, n):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("n", n, subsample_size=x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def full_model(x, y):
    stream_model(x, y, x.shape[0])


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(defaults, "FIXED_CHUNK", 40)


def test_batches_cover_each_epoch_and_restart_exactly():
    b = Batches(X, Y, batch_size=100, seed=1)
    it = iter(b)
    epoch = [next(it) for _ in range(b.per_epoch)]
    rows = np.concatenate([e[0] for e in epoch])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, X.tolist()))  # each datum once per epoch
    later = [next(it) for _ in range(5)]
    again = b.at(b.per_epoch + 2)
    for e in later[2:]:
        np.testing.assert_array_equal(next(again)[0], e[0])
    assert not np.array_equal(later[0][0], epoch[0][0])  # reshuffled


def test_feeder_blocks_and_generic_iterables():
    batches = [(np.full((3, 2), i, np.float32),) for i in range(5)]
    f = Feeder(batches, start=2)  # a list: iterated again when exhausted; resume skips
    assert f.first()[0][0, 0] == 2
    block = f.block(4, 6)
    assert block[0].shape == (6, 3, 2)
    np.testing.assert_array_equal(block[0][:, 0, 0], [2, 3, 4, 0, 0, 0])  # wraps around, padded
    with pytest.raises(ValueError, match="no batches"):
        Feeder([]).first()
    with pytest.raises(TypeError, match="tuples"):
        Feeder([{"x": 1}]).first()


def test_streamed_fit_matches_full_data_posterior():
    full = provi.fit(full_model, jnp.asarray(X), jnp.asarray(Y), guide="meanfield", steps=1500, progress=False)
    streamed = provi.fit(stream_model, n=N, batches=Batches(X, Y, batch_size=100), guide="meanfield", steps=1500, progress=False)
    a, b = full.sample(4000)["w"], streamed.sample(4000)["w"]
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 0.5 * a.std(0))


def test_streamed_steps_use_one_batch_each():
    """With a point-mass guide the loss of each step is -log p(w, batch) scaled by N / B: recompute
    the first steps' losses from the batches themselves."""
    batches = list(itertools.islice(Batches(X, Y, batch_size=60, seed=3).at(0), 20))
    res = provi.fit(stream_model, n=N, batches=batches, guide="delta", init="zero", steps=20, progress=False,
                    optimizer=__import__("optax").sgd(0.0))
    for k in (0, 7, 19):
        x, y = batches[k]
        lp = dist.Normal(0, 1).log_prob(jnp.zeros(2)).sum() + N / 60 * dist.Bernoulli(logits=jnp.zeros(60)).log_prob(y).sum()
        assert abs(res.losses[k] + float(lp)) < 1e-3 * abs(float(lp))
    x0 = np.asarray(res.data[0])
    np.testing.assert_array_equal(x0, batches[0][0])


def _crash_then_resume(tmp_path, monkeypatch, make_loader, name, **opts):
    ref = provi.fit(stream_model, batches=make_loader(), checkpoint=tmp_path / f"{name}-ref", **opts)
    real, count = ckpt_io.save, [0]

    class Crash(Exception):
        pass

    def save(path, c):
        real(path, c)
        count[0] += 1
        if count[0] == 3:
            raise Crash

    monkeypatch.setattr(ckpt_io, "save", save)
    with pytest.raises(Crash):
        provi.fit(stream_model, batches=make_loader(), checkpoint=tmp_path / name, checkpoint_every=1, **opts)
    monkeypatch.setattr(ckpt_io, "save", real)
    assert ckpt_io.read_meta(tmp_path / name)["step"] == 120
    res = provi.fit(stream_model, batches=make_loader(), resume=tmp_path / name, **opts)
    np.testing.assert_array_equal(res.losses, ref.losses)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(ref.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_streamed_resume_equals_uninterrupted(tmp_path, monkeypatch):
    opts = dict(n=N, guide="meanfield", steps=300, seed=2, progress=False)
    _crash_then_resume(tmp_path, monkeypatch, lambda: Batches(X, Y, batch_size=100), "batches", **opts)
    one_epoch = list(itertools.islice(Batches(X, Y, batch_size=100).at(0), 12))
    _crash_then_resume(tmp_path, monkeypatch, lambda: one_epoch, "list", **opts)  # resumed by skipping


def test_streamed_model_with_fixed_array_argument():
    """Arguments after the batch (here the prior scales) are passed whole to every step."""

    def m(x, y, scales, n):
        w = numpyro.sample("w", dist.Normal(0, scales).to_event(1))
        with numpyro.plate("n", n, subsample_size=x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    scales = np.array([1.0, 2.0], np.float32)
    res = provi.fit(m, scales, n=N, batches=Batches(X, Y, batch_size=100), guide="meanfield", steps=60, progress=False)
    assert res.sample(10)["w"].shape == (10, 2) and np.all(np.isfinite(res.losses))

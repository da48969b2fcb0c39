"""Checkpoints: a resumed fit equals an uninterrupted one exactly; a write that fails midway
leaves the previous checkpoint intact."""

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi

from provi import defaults  # noqa: E402
from provi.engine import checkpoint as ckpt_io

Y = jnp.asarray(np.random.default_rng(1).normal(1.0, 2.0, size=30), dtype=jnp.float32)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


class Crash(Exception):
    pass


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(defaults, "FIXED_CHUNK", 50)


def _crash_after(monkeypatch, n_saves):
    real, count = ckpt_io.save, [0]

    def save(path, ckpt):
        real(path, ckpt)
        count[0] += 1
        if count[0] == n_saves:
            raise Crash

    monkeypatch.setattr(ckpt_io, "save", save)
    return real


def _assert_same(a, b):
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.stop.reason == b.stop.reason and a.stop.steps == b.stop.steps


@pytest.mark.parametrize("early", [False, True])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, early):
    opts = dict(guide="meanfield", steps=600, seed=3, progress=False, early_stop=early)
    ref = provi.fit(model, Y, checkpoint=tmp_path / "ref.ckpt", **opts)  # uninterrupted
    path = tmp_path / "fit.ckpt"
    real = _crash_after(monkeypatch, 2)
    with pytest.raises(Crash):
        provi.fit(model, Y, checkpoint=path, checkpoint_every=2, **opts)
    assert ckpt_io.read_meta(path)["step"] == 200
    monkeypatch.setattr(ckpt_io, "save", real)
    res = provi.fit(model, Y, resume=path, checkpoint=path, checkpoint_every=2, **opts)
    _assert_same(ref, res)
    assert len(res.losses) == res.stop.steps


def test_steps_do_not_depend_on_chunks(tmp_path):
    """The adaptive chunk schedule (sized by speed) and the fixed one give the same steps exactly
    and the same averaged iterate up to the order of its float sums."""
    opts = dict(guide="fullrank", steps=500, seed=2, progress=False)
    a, b = provi.fit(model, Y, **opts), provi.fit(model, Y, checkpoint=tmp_path / "c.ckpt", **opts)
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_resume_numpyro_guide_with_model_param(tmp_path, monkeypatch):
    def m(y):
        loc = numpyro.param("loc", 0.0)
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", dist.Normal(loc + numpyro.sample("s", dist.Normal(0, 1)), 1.0), obs=y)

    def g(y):
        a = numpyro.param("a", 0.0)
        numpyro.sample("s", dist.Normal(a, 1.0))

    opts = dict(guide=g, steps=300, seed=0, progress=False)
    ref = provi.fit(m, Y, **opts)
    path = tmp_path / "g.ckpt"
    real = _crash_after(monkeypatch, 1)
    with pytest.raises(Crash):
        provi.fit(m, Y, checkpoint=path, checkpoint_every=3, **opts)
    monkeypatch.setattr(ckpt_io, "save", real)
    _assert_same(ref, provi.fit(m, Y, resume=path, **opts))


def test_checkpoint_is_open_format(tmp_path):
    path = tmp_path / "fit.ckpt"
    res = provi.fit(model, Y, guide="meanfield", steps=100, progress=False, checkpoint=path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
    assert meta["format"] == ckpt_io.FORMAT and meta["step"] == 100
    arrays = np.load(path)
    np.testing.assert_array_equal(arrays["losses"], res.losses)
    assert "state.key" in arrays.files


def test_interrupted_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    provi.fit(model, Y, guide="meanfield", steps=100, progress=False, checkpoint=path)
    before = path.read_bytes()
    real_write, calls = np.lib.format.write_array, [0]

    def failing_write(*a, **k):
        calls[0] += 1
        if calls[0] == 3:  # midway through the arrays: part of the new file is on disk
            raise OSError("disk full")
        return real_write(*a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        provi.fit(model, Y, guide="meanfield", steps=200, seed=5, progress=False, checkpoint=path)
    assert calls[0] == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fit.ckpt"]  # no temporary file left behind
    assert ckpt_io.read_meta(path)["step"] == 100


def test_resume_rejects_other_fit(tmp_path):
    path = tmp_path / "fit.ckpt"
    provi.fit(model, Y, guide="meanfield", steps=100, seed=1, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="seed"):
        provi.fit(model, Y, guide="meanfield", steps=200, seed=2, progress=False, resume=path)
    with pytest.raises(ValueError, match="different fit|shape"):
        provi.fit(model, Y, guide="fullrank", steps=200, seed=1, progress=False, resume=path)
    with pytest.raises(FileNotFoundError):
        provi.fit(model, Y, guide="meanfield", steps=200, progress=False, resume=tmp_path / "none.ckpt")


def test_checkpoint_every_validated(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        provi.fit(model, Y, steps=10, progress=False, checkpoint=tmp_path / "c", checkpoint_every=0)

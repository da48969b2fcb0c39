"""provi.fit end to end: reproducibility, model features, results, bad input, and failures."""


import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints

import provi
from provi.defaults import DRAW_BLOCK
from provi.errors import ModelError


def test_same_seed_same_result(es):
    model, data = es
    a = provi.fit(model, *data, guide="meanfield", steps=500, progress=False, seed=7)
    b = provi.fit(model, *data, guide="meanfield", steps=500, progress=False, seed=7)
    c = provi.fit(model, *data, guide="meanfield", steps=500, progress=False, seed=8)
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)  # sums of iterates may group differently
    assert not np.array_equal(a.losses, c.losses)
    np.testing.assert_array_equal(a.sample(10, seed=1)["mu"], b.sample(10, seed=1)["mu"])


def test_steps_and_losses(es):
    model, data = es
    res = provi.fit(model, *data, guide="meanfield", steps=1234, progress=False)
    assert res.losses.shape == (1234,) and np.all(np.isfinite(res.losses))
    assert res.stop.reason == "steps" and res.stop.steps == 1234


def test_compiled_loop_is_reused_across_fits_and_data(es):
    from provi.engine.compile import cache_size

    model, data = es
    provi.fit(model, *data, guide="meanfield", steps=200, progress=False)
    n = cache_size()
    y2 = data[2] + 1.0  # new data of the same shape: no new program
    provi.fit(model, data[0], data[1], y2, guide="meanfield", steps=300, progress=False, seed=3)
    assert cache_size() == n


def test_importance_weights_are_compiled_once_per_model_and_layout(es):
    """Two fits of one model on data of the same layout share the compiled importance weights (one
    trace of the weight program), and each fit's weights are its own data's: log p(y, z) - log q(z)
    computed here with NumPyro's log density."""
    from numpyro.infer.util import log_density

    from provi.engine import draws

    model, data = es
    a = provi.fit(model, *data, guide="meanfield", steps=300, progress=False)
    a.importance_log_weights(500, seed=1)
    traced = draws.log_weights._cache_size()
    y2 = data[2] + 5.0
    b = provi.fit(model, data[0], data[1], y2, guide="meanfield", steps=300, progress=False, seed=2)
    z, log_w = b.weighted_draws(500, seed=1)
    assert draws.log_weights._cache_size() == traced
    _, log_q = b.draws(500, seed=1)
    for i in (0, 123, 499):
        lp, _ = log_density(model, (data[0], data[1], y2), {}, {k: v[i] for k, v in z.items() if k != "theta"})
        np.testing.assert_allclose(log_w[i], float(lp) - float(log_q[i]), rtol=1e-4, atol=1e-3)


def test_auto_compiles_its_first_khat_programs_ahead():
    """guide="auto" compiles its first k-hat's draw and importance-weight programs ahead (from
    shapes, on the compiler thread): the jitted programs never trace them, and the weights the fit
    judged are those the jitted programs compute."""
    from provi.engine import draws

    def model(y=None):  # a model of its own (nothing compiled for it yet), conjugate: auto keeps its first fit
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)

    y = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    traced = draws.draw._cache_size(), draws.log_weights._cache_size()
    res = provi.fit(model, y, progress=False, seed=3)
    assert len(res.auto["tried"]) == 1 and (draws.draw._cache_size(), draws.log_weights._cache_size()) == traced
    judged = res.importance_log_weights(DRAW_BLOCK, seed=3)  # the k-hat's draws (memoised by the pipeline)
    assert res.auto["khat_draws"] == DRAW_BLOCK and judged.shape == (DRAW_BLOCK,)
    z, log_q = draws.draw(res.whole[1], res.params["guide"], res.consts, DRAW_BLOCK, jax.random.PRNGKey(3), np.int32(0), res.data, res.layout)
    again = draws.log_weights(res._compiled_model(), res.params["model"], z, log_q, res.data, res.layout)
    np.testing.assert_allclose(judged, np.asarray(again), rtol=1e-6, atol=1e-6)


def test_early_stopping_stops_before_the_budget(es):
    model, data = es
    res = provi.fit(model, *data, guide="fullrank", progress=False)
    assert res.stop.reason == "converged" and res.stop.steps < 20_000


def test_sample_predictive_summary_arviz(es):
    model, data = es
    res = provi.fit(model, *data, guide="fullrank", steps=2000, progress=False)
    draws = res.sample(300)
    assert set(draws) == {"mu", "tau", "theta_trans", "theta"}
    assert draws["theta"].shape == (300, 8) and np.all(draws["tau"] > 0)
    np.testing.assert_allclose(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_trans"], rtol=1e-5, atol=1e-5)
    pred = res.predictive(50)
    assert pred["y"].shape == (50, 8)
    assert not np.allclose(pred["y"][0], data[2])  # drawn, not the observed data
    s = res.summary(2000)
    assert list(s.columns) == ["mean", "sd", "5%", "50%", "95%"]
    assert len(s) == 2 + 8 + 8 and "theta[7]" in s.index
    idata = res.to_arviz(200)
    assert {"posterior", "sample_stats", "observed_data"} <= set(idata.groups())
    assert idata.posterior["theta"].shape == (1, 200, 8)
    np.testing.assert_array_equal(idata.sample_stats["loss"].values, res.losses)
    np.testing.assert_array_equal(idata.observed_data["y"].values, data[2])
    d = res.diagnostics(4000)
    assert np.isfinite(d.khat) and "k-hat" in str(d)

    # log importance weights are computed once per (n, seed) and parameters: new parameters, new weights
    z, lw = res.weighted_draws(3000, seed=5)
    assert res.importance_log_weights(3000, seed=5) is lw
    np.testing.assert_array_equal(res.weighted_draws(3000, seed=5)[0]["mu"], z["mu"])
    fitted = res.params
    res.params = jax.tree.map(lambda a: a + 0.1, fitted)
    moved = res.importance_log_weights(3000, seed=5)
    assert moved is not lw and not np.allclose(moved, lw)
    res.params = fitted
    np.testing.assert_allclose(res.importance_log_weights(3000, seed=5), lw, rtol=1e-6)
    assert res.importance_log_weights(1000) is res.importance_log_weights(1000, seed=res.seed + 1)  # seed=None's draws
    # a larger set's first block is the DRAW_BLOCK set of the same seed: its known weights are reused
    first = res.importance_log_weights(DRAW_BLOCK, seed=7)
    calls = []
    res.log_weights = lambda z, log_q: calls.append(1) or provi.FitResult.log_weights(res, z, log_q)
    z2, lw2 = res.weighted_draws(2 * DRAW_BLOCK, seed=7)
    del res.log_weights
    assert len(calls) == 1 and lw2.shape == (2 * DRAW_BLOCK,)
    np.testing.assert_array_equal(lw2[:DRAW_BLOCK], first)
    np.testing.assert_allclose(res.log_weights({k: v[:DRAW_BLOCK] for k, v in z2.items()}, res.draws(DRAW_BLOCK, seed=7)[1]),
                               first, rtol=1e-5, atol=1e-5)  # the reused block is that set's own weights


def test_save_and_load_round_trip(es, tmp_path):
    model, data = es
    res = provi.fit(model, *data, guide="lowrank", steps=300, progress=False)
    res.save(tmp_path / "fit")
    back = provi.load(tmp_path / "fit", model, *data)
    np.testing.assert_array_equal(back.losses, res.losses)
    np.testing.assert_allclose(back.sample(100, seed=3)["tau"], res.sample(100, seed=3)["tau"])
    assert not list(tmp_path.rglob("*.pkl"))


def test_save_and_load_keep_auto_correction(es, tmp_path):
    import json

    model, data = es
    res = provi.fit(model, *data, progress=False)  # guide="auto": PSIS-corrected summaries here
    assert res.correct == "psis"
    res.save(tmp_path / "fit")
    back = provi.load(tmp_path / "fit", model, *data)
    assert back.correct == "psis" and back.auto == res.auto
    assert np.isfinite(res.stop.seconds) and back.stop.seconds == pytest.approx(res.stop.seconds)
    a, b = res.summary(seed=2), back.summary(seed=2)
    np.testing.assert_allclose(np.asarray(b["mean"], float), np.asarray(a["mean"], float), rtol=1e-5, atol=1e-6)
    meta = tmp_path / "fit" / "meta.json"
    old = dict(json.loads(meta.read_text()), format="provi-fit/1")  # softplus-era scales
    meta.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="provi-fit/1"):
        provi.load(tmp_path / "fit", model, *data)


def features(x, y=None, scale=1.0):
    """factor, deterministic, a flat prior, a simplex, an ordered vector, lax.scan and kwargs."""
    w = numpyro.sample("w", dist.ImproperUniform(constraints.real, (), ()))
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(3)))
    cut = numpyro.sample("cut", dist.ImproperUniform(constraints.ordered_vector, (), (2,)))
    numpyro.factor("cut_prior", dist.Normal(0, 3).log_prob(cut).sum())
    numpyro.deterministic("gap", cut[1] - cut[0])
    _, path = jax.lax.scan(lambda c, xi: (c + w * xi, c + w * xi), 0.0, x)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Normal(path * scale, sigma), obs=y)
    numpyro.sample("counts", dist.Multinomial(30, p), obs=jnp.array([5.0, 10.0, 15.0]))


def test_model_features():
    x = jnp.linspace(0.1, 1.0, 10)
    y = jnp.cumsum(2.0 * x) + 0.05 * jax.random.normal(jax.random.PRNGKey(0), (10,))
    res = provi.fit(features, x, y=y, scale=1.0, guide="fullrank", progress=False)
    draws = res.sample(2000)
    assert np.all(draws["cut"][:, 1] > draws["cut"][:, 0])
    np.testing.assert_allclose(draws["p"].sum(-1), 1.0, rtol=1e-5)
    assert np.all(draws["gap"] > 0)
    odd = res.sample(1234, seed=5)  # deterministic sites in blocks of 1,000, the last one padded
    np.testing.assert_allclose(odd["gap"], odd["cut"][:, 1] - odd["cut"][:, 0], rtol=1e-5, atol=1e-6)
    assert abs(draws["w"].mean() - 2.0) < 0.1
    np.testing.assert_allclose(draws["p"].mean(0), np.array([6, 11, 16]) / 33, atol=0.03)


def test_numpyro_guide_and_model_params():
    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0, 10))
        s = numpyro.param("s", 1.0, constraint=constraints.positive)
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("y", dist.Normal(w * x, s), obs=y)

    def guide(x, y=None):
        m = numpyro.param("m", 0.0)
        sd = numpyro.param("sd", 1.0, constraint=constraints.positive)
        numpyro.sample("w", dist.Normal(m, sd))

    x = jnp.linspace(-1, 1, 100)
    y = 2 * x + 0.3 * jax.random.normal(jax.random.PRNGKey(1), (100,))
    res = provi.fit(model, x, y, guide=guide, steps=4000, optimizer=optax.adam(0.02), progress=False)
    assert abs(float(res.model_params()["s"]) - 0.3) < 0.05  # the model's parameter is learned
    w = res.sample(4000)["w"]
    exact_sd = float(res.model_params()["s"]) / np.sqrt(float(jnp.sum(x**2)) + (0.3 / 10) ** 2)
    assert abs(w.std() / exact_sd - 1) < 0.15
    assert res.diagnostics(2000).estimators == {"w": "Reparam"}


# --- bad input -------------------------------------------------------------------------------


def simple(y):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("n", 5):
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)


def test_nan_in_data_names_the_site():
    y = jnp.array([1.0, jnp.nan, 0.0, 1.0, 2.0])
    with pytest.raises(ModelError, match=r"observed site 'y' has 1 non-finite"):
        provi.fit(simple, y, progress=False)


def test_data_shape_mismatch_names_the_site():
    with pytest.raises(ModelError, match=r"observed site 'y': data of shape \(5, 1\)"):
        provi.fit(simple, jnp.ones((5, 1)), progress=False)
    with pytest.raises(ModelError, match=r"observed site 'y'"):
        provi.fit(simple, jnp.ones((4,)), progress=False)


def test_discrete_latent_with_a_family_points_to_estimators():
    def model():
        numpyro.sample("k", dist.Bernoulli(0.3))
        numpyro.sample("x", dist.Normal(0, 1), obs=1.0)

    with pytest.raises(ModelError, match=r"latent site 'k' is discrete \(BernoulliProbs\).*estimator"):
        provi.fit(model, progress=False)


def test_bad_options():
    with pytest.raises(ValueError, match="unknown guide 'fullrnk'"):
        provi.fit(simple, jnp.ones(5), guide="fullrnk", progress=False)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            provi.fit(simple, jnp.ones(5), steps=bad, progress=False)
    with pytest.raises(TypeError, match="NumPyro model function"):
        provi.fit("not a model", progress=False)
    with pytest.raises(TypeError, match="objective must be a provi objective"):
        provi.fit(simple, jnp.ones(5), objective="elbo", progress=False)
    with pytest.raises(ValueError, match="unknown init"):
        provi.fit(simple, jnp.ones(5), init="median", progress=False)
    with pytest.raises(ModelError, match="unknown site"):
        provi.fit(simple, jnp.ones(5), init={"nu": 1.0}, progress=False)


def test_model_errors_surface_unchanged():
    class Boom(RuntimeError):
        pass

    def broken(y):
        numpyro.sample("mu", dist.Normal(0, 1))
        raise Boom("the model's own message")

    with pytest.raises(Boom, match="the model's own message") as info:
        provi.fit(broken, jnp.ones(3), progress=False)
    frames = [f.name for f in info.traceback]
    assert "broken" in frames
    assert "inspect_model" not in frames[frames.index("broken") - 1 :]


# --- failures during a fit ---------------------------------------------------------------------


def test_nonfinite_loss_stops_and_returns_last_finite_state():
    def model(y):
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(0.0, s), obs=y)

    def guide(y):
        loc = numpyro.param("loc", 0.0)
        numpyro.sample("s", dist.LogNormal(loc, 0.1))

    # a huge learning rate drives log s to -inf: the likelihood's density becomes non-finite
    with pytest.warns(RuntimeWarning, match=r"became non-finite at step \d+") as rec:
        res = provi.fit(model, jnp.array(0.5), guide=guide, optimizer=optax.sgd(1e4), steps=500, progress=False)
    assert res.stop.reason == "nonfinite"
    assert res.stop.bad_step is not None and res.stop.steps <= res.stop.bad_step
    assert len(res.losses) == res.stop.steps and np.all(np.isfinite(res.losses))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(res.params))
    msg = str(rec[0].message)
    assert "['guide']['loc']" in msg or "model site 's'" in msg or "'y'" in msg


def test_interrupt_returns_the_result_so_far(es, monkeypatch):
    from provi.engine import compile as loop
    from provi.engine.runner import Runner

    model, data = es
    provi.fit(model, *data, guide="meanfield", steps=300, progress=False)  # compile
    calls = {"n": 0}
    real = Runner._chunk

    orig_post = Runner.__post_init__

    def post(self):
        orig_post(self)
        run = self.run

        def interrupting(*a):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return run(*a)

        self.run = interrupting

    monkeypatch.setattr(Runner, "__post_init__", post)
    loop.clear_cache()
    with pytest.warns(RuntimeWarning, match="interrupted"):
        res = provi.fit(model, *data, guide="meanfield", steps=20_000, early_stop=False, progress=False)
    assert res.stop.reason == "interrupted"
    assert 0 < res.stop.steps < 20_000 and len(res.losses) == res.stop.steps
    assert np.isfinite(res.sample(10)["mu"]).all()
    del real
    loop.clear_cache()


def test_model_params_with_computed_initial_values():
    def model(x, y=None):
        w = numpyro.param("w", jnp.zeros(3))  # computed inside the model
        b = numpyro.param("b", lambda key: jnp.ones(()))  # an initialiser function
        numpyro.sample("y", dist.Normal(x @ w + b, 1.0).to_event(1), obs=y)
        numpyro.sample("u", dist.Normal(0, 1))

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([1.0, 2.0, 3.0]) + 0.5).astype(np.float32)
    res = provi.fit(model, x, y, guide="meanfield", steps=3000, progress=False)
    np.testing.assert_allclose(res.model_params()["w"], [1.0, 2.0, 3.0], atol=0.05)
    assert abs(float(res.model_params()["b"]) - 0.5) < 0.05


def test_loop_compiled_ahead_from_shapes_is_the_one_that_runs():
    """`Runner.prepare` compiles the chunk from abstract shapes while the start runs; the fit must
    then run that executable, not compile the loop a second time for its concrete arguments."""
    from provi.engine import compile as loop

    def ahead_model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    y = np.random.default_rng(0).normal(1.0, 2.0, size=20).astype(np.float32)
    for guide in ("meanfield", "fullrank"):
        res = provi.fit(ahead_model, y, guide=guide, steps=300, progress=False)
        assert len(res.losses) == 300 and np.all(np.isfinite(res.losses))
    runners = [r for k, r in loop.cache_entries() if k[0] == "runner" and k[2] is ahead_model]
    assert len(runners) == 2
    for runner in runners:
        compiled = [v for k, v in loop.cache_entries() if k[0] == "ahead" and k[1] is runner.jit]
        assert len(compiled) == 1 and compiled[0].done()
        assert runner.jit._cache_size() == 0  # the jit path never compiled


def test_bad_input_in_the_python_api_is_named(es):
    model, data = es
    with pytest.raises(provi.errors.EstimatorError, match="site 'mu': a family guide draws every site by reparameterization"):
        provi.fit(model, *data, guide="meanfield", estimators={"mu": provi.estimators.Reinforce()}, progress=False)
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        provi.fit(model, *data, guide="meanfield", optimizer="adam", progress=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        provi.fit(model, *data, seed=-1, progress=False)

    def no_latent(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ModelError, match="no latent sample site"):
        provi.fit(no_latent, jnp.zeros(3), progress=False)


def test_plate_size_mismatches_name_the_site_and_the_plate():
    def latent(y):
        with numpyro.plate("groups", 10):
            z = numpyro.sample("z", dist.Normal(jnp.zeros(12), 1.0))
        numpyro.sample("y", dist.Normal(z.sum(), 1.0), obs=y)

    with pytest.raises(ModelError, match="site 'z' does not fit plate 'groups' of size 10 .*length 10"):
        provi.fit(latent, jnp.zeros(()), guide="meanfield", steps=2, progress=False)

    def observed(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", 10):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ModelError, match="observed site 'y': data of shape \\(12,\\)"):
        provi.fit(observed, jnp.zeros(12), guide="meanfield", steps=2, progress=False)

    def other(y):  # a broadcasting error outside any plate stays the model's own error
        mu = numpyro.sample("mu", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        numpyro.sample("y", dist.Normal(mu + jnp.zeros(4), 1.0).to_event(1), obs=y)

    with pytest.raises((ValueError, TypeError)) as info:
        provi.fit(other, jnp.zeros(4), guide="meanfield", steps=2, progress=False)
    assert not isinstance(info.value, ModelError)


def test_importing_provi_and_touching_fit_prints_nothing_under_warnings_as_errors():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-W", "error", "-c", "import provi; provi.fit"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stderr[-2000:]


def test_a_density_that_is_nan_everywhere_stops_at_once_naming_the_site():
    def broken(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.factor("f", jnp.sum(jnp.log(-jnp.abs(y))) * mu)  # NaN at every mu

    with pytest.warns(RuntimeWarning, match="non-finite at step 0.*model site 'f'"):
        res = provi.fit(broken, jnp.zeros(3), progress=False)
    assert res.stop.reason == "nonfinite" and res.stop.steps == 0
    assert res.auto["tried"] == [res.auto["tried"][0]]  # auto tried no flow after a non-finite fit

"""Amortized guides: encoder/decoder modules, minibatch plates shared by model and guide, their
scaling, per-data-point densities, held-out log-likelihood and posterior-collapse statistics.

The oracle is a linear-Gaussian latent model, z_n ~ N(0, I_d), x_n ~ N(W z_n + b, s^2 I_D), with W's
columns orthogonal: the exact posterior q(z_n | x_n) = N(A (x_n - b), diag(v)) is in the amortized
family (a linear encoder with a global scale), and log p(x_n) = log N(x_n; b, W W^T + s^2 I).
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from scipy.stats import multivariate_normal

import provi
from provi.core import plates as subsample
from provi.core.model import inspect_model
from provi.programs import make_guide
from provi.programs import ModelProgram
from provi.engine.layout import split_data
from provi.engine.loss import make_loss

N, D, d, S = 400, 4, 2, 0.5
_rng = np.random.default_rng(0)
_Q, _ = np.linalg.qr(_rng.normal(size=(D, D)))
W = _Q[:, :d] * np.array([2.0, 1.0])  # orthogonal columns: W^T W = diag(4, 1)
B_TRUE = np.array([0.5, -1.0, 0.0, 2.0])
X = jnp.asarray(_rng.normal(size=(N, d)) @ W.T + B_TRUE + S * _rng.normal(size=(N, D)), jnp.float32)
PREC = np.eye(d) + W.T @ W / S**2
POST_SD = 1 / np.sqrt(np.diag(PREC))  # exact posterior sd (diagonal)
POST_A = np.linalg.solve(PREC, W.T / S**2)  # exact posterior mean = A (x - b)
ENC = eqx.nn.Linear(D, d, key=jax.random.PRNGKey(1))


def model(x, batch=None, learn_b=False):
    b = numpyro.param("b", jnp.zeros(D)) if learn_b else jnp.asarray(B_TRUE, jnp.float32)
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        z = numpyro.sample("z", dist.Normal(0, 1).expand([d]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ jnp.asarray(W.T, jnp.float32) + b, S).to_event(1), obs=x[idx])


def guide(x, batch=None, learn_b=False):
    enc = provi.nn.module("encoder", ENC)
    log_sd = numpyro.param("log_sd", jnp.full((d,), -1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        numpyro.sample("z", dist.Normal(jax.vmap(enc)(x[idx]), jnp.exp(log_sd)).to_event(1))


def _programs(m, g, *args, **kwargs):
    info = inspect_model(m, args, kwargs)
    data, layout = split_data(args, kwargs)
    mp = ModelProgram(m, info)
    gp = make_guide(g, info, args, kwargs, jax.random.PRNGKey(0), None)
    return mp, gp, data, layout, {"model": mp.init_params(), "guide": gp.init_params()}


def _encoder(params):
    return eqx.combine(params["guide"]["encoder$params"], eqx.partition(ENC, eqx.is_inexact_array)[1])


# --- the module helper ------------------------------------------------------------------------
def test_module_registers_encoder_and_decoder_arrays_as_params():
    dec = eqx.nn.MLP(d, D, 8, 1, key=jax.random.PRNGKey(2))

    def m(x, batch=None):
        net = provi.nn.module("decoder", dec)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            z = numpyro.sample("z", dist.Normal(0, 1).expand([d]).to_event(1))
            numpyro.sample("x", dist.Normal(jax.vmap(net)(z), 1.0).to_event(1), obs=x[idx])

    mp, gp, *_, params = _programs(m, guide, X, batch=32)
    leaves = lambda t: [x.shape for x in jax.tree.leaves(t)]
    assert leaves(params["model"]["decoder$params"]) == leaves(eqx.filter(dec, eqx.is_inexact_array))
    assert leaves(params["guide"]["encoder$params"]) == [(d, D), (d,)]
    assert gp.shapes["z"] == (32, d) and gp.plates == {"data": (N, 32)} and mp.plates == {"data": (N, 32)}
    res = provi.fit(m, X, guide=guide, steps=20, progress=False, batch=32)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), res.params, params)
    assert all(v > 0 for v in jax.tree.leaves(moved["model"])) and all(v > 0 for v in jax.tree.leaves(moved["guide"]))


def test_module_rejects_non_equinox():
    with pytest.raises(TypeError, match="equinox Module"):
        provi.nn.module("net", lambda x: x)


# --- minibatch plates ---------------------------------------------------------------------------
def test_draw_gives_distinct_indices_in_range():
    idx = subsample.draw({"data": (50, 20), "other": (7, 3)}, jax.random.PRNGKey(3))
    assert idx["data"].shape == (20,) and len(set(np.asarray(idx["data"]).tolist())) == 20
    assert np.all((np.asarray(idx["data"]) >= 0) & (np.asarray(idx["data"]) < 50))
    assert idx["other"].shape == (3,)


def test_replay_sets_indices_and_scale_without_warnings():
    idx = jnp.array([3, 1, 4])

    def m():
        with numpyro.plate("data", 10, subsample_size=5) as i:
            numpyro.sample("x", dist.Normal(0, 1), obs=jnp.zeros(3))
        return i

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = numpyro.handlers.trace(numpyro.handlers.seed(subsample.ReplayPlates(m, {"data": idx}), 0)).get_trace()
    assert np.array_equal(tr["data"]["value"], idx)
    assert tr["x"]["scale"] == pytest.approx(10 / 3)


def test_mismatched_plates_are_an_error():
    with pytest.raises(provi.errors.ModelError, match="plate 'data'"):
        subsample.merge_plates({"data": (10, 5)}, {"data": (10, 4)})


def test_model_and_guide_see_the_same_minibatch_for_every_particle():
    """A guide that puts z_n at x_n (sd 1e-3) and a model that observes x_n ~ N(z_n, 1e-3): the log
    weight is about D * log N(0; 0, 1e-3) per point only when both use the same indices."""
    xs = jnp.arange(60.0)[:, None]

    def m(x, batch=None):
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            z = numpyro.sample("z", dist.Normal(0, 100).expand([1]).to_event(1))
            numpyro.sample("x", dist.Normal(z, 1e-3).to_event(1), obs=x[idx])

    def g(x, batch=None):
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            numpyro.sample("z", dist.Normal(x[idx], 1e-3).to_event(1))

    @provi.objective
    def worst_point(model, guide, *args, n=4):
        zs, _ = provi.sim(guide, *args, n=n)
        p = provi.nn.pointwise_density(model, zs, plate="data")
        q = provi.nn.pointwise_density(guide, zs, plate="data")
        return jnp.min(p.local - q.local)

    mp, gp, data, layout, params = _programs(m, g, xs, batch=8)
    loss = jax.jit(make_loss(mp, gp, worst_point(), layout))
    for s in range(5):
        _, value = loss(params, {}, jax.random.PRNGKey(s), data)
        # log N(x; z, 1e-3) - log N(z; x, 1e-3) + log N(z; 0, 100) is about -5.5 when matched
        assert -10 < float(value) < 0


def test_minibatch_elbo_is_unbiased_for_the_full_data_elbo():
    """E over indices and draws of the minibatch ELBO (scaled N/B) = the full-data ELBO."""
    mp, gp, data, layout, params = _programs(model, guide, X, batch=20)
    mp_full, gp_full, data_full, layout_full, _ = _programs(model, guide, X)
    keys = jax.random.split(jax.random.PRNGKey(7), 4000)
    mini = jax.jit(jax.vmap(lambda k: make_loss(mp, gp, provi.ELBO(), layout)(params, {}, k, data)[1]))(keys)
    full = jax.jit(jax.vmap(lambda k: make_loss(mp_full, gp_full, provi.ELBO(), layout_full)(params, {}, k, data_full)[1]))(keys)
    se = np.sqrt(np.var(mini) / len(keys) + np.var(full) / len(keys))
    assert abs(np.mean(mini) - np.mean(full)) < 4 * se
    assert np.std(mini) > np.std(full)  # the minibatch adds variance: it is really subsampled


def test_pointwise_density_adds_up_to_density():
    mp, gp, data, layout, params = _programs(model, guide, X, batch=16)
    idx = subsample.draw(mp.plates, jax.random.PRNGKey(0))
    keys = provi.core.bound.KeyStream(jax.random.PRNGKey(1))
    bm = provi.core.bound.BoundModel(mp.replaying(idx), params["model"], keys, (X,), {"batch": 16})
    bg = provi.core.bound.BoundGuide(gp.replaying(idx), params["guide"], {}, keys, (X,), {"batch": 16})
    z, log_q = provi.sim(bg, n=3)
    for bound, total in ((bm, provi.density(bm, z)), (bg, log_q)):
        pw = provi.nn.pointwise_density(bound, z)
        assert pw.local.shape == (3, 16) and pw.scale == pytest.approx(N / 16)
        np.testing.assert_allclose(pw.rest + pw.scale * pw.local.sum(-1), total, rtol=1e-5)


# --- recovery of the exact posterior, model parameters, held-out likelihood, collapse ------------
@pytest.fixture(scope="module")
def fitted():
    return provi.fit(
        model, X, guide=guide, steps=4000, optimizer=OPT, progress=False, average=True, seed=0, batch=50, learn_b=True
    )


OPT = optax.adam(optax.cosine_decay_schedule(1e-1, 4000, 1e-3))


@pytest.mark.slow
def test_minibatch_fit_recovers_exact_posterior_and_model_parameter(fitted):
    enc = _encoder(fitted.params)
    b = np.asarray(fitted.params["model"]["b"])
    # posterior mean map A (x - b): the encoder's weight is A and its bias -A b
    np.testing.assert_allclose(np.asarray(enc.weight), POST_A, atol=0.02)
    np.testing.assert_allclose(np.asarray(enc.bias), -POST_A @ b, atol=0.02)
    np.testing.assert_allclose(np.asarray(jnp.exp(fitted.params["guide"]["log_sd"])), POST_SD, rtol=0.02)
    # the maximum-likelihood b is the sample mean (the exact posterior is in the family, so the
    # ELBO's maximiser over b is the likelihood's); the sample mean's own sampling error is ~0.1
    np.testing.assert_allclose(b, np.asarray(X.mean(0)), atol=0.02)


@pytest.mark.slow
def test_results_cover_the_whole_data_row_by_row(fitted):
    """`sample` and the log weights of a minibatch fit run the plates at their full range: row i
    of the local latent is data point i's posterior."""
    n = 400
    z = fitted.sample(n, seed=1)["z"]
    assert z.shape == (n, N, d)
    b = np.asarray(fitted.params["model"]["b"])
    exact = (np.asarray(X) - b) @ POST_A.T  # (N, d) exact posterior means
    np.testing.assert_allclose(z.mean(0), exact, atol=4 * POST_SD.max() / np.sqrt(n) + 0.03)
    zz, log_q = fitted.draws(8, seed=2)
    lw = np.asarray(fitted.log_weights(zz, log_q))
    assert lw.shape == (8,) and np.all(np.isfinite(lw))


@pytest.mark.slow
def test_heldout_log_likelihood_matches_exact_marginal(fitted):
    xt = X[:50]
    ll = provi.nn.log_likelihood(fitted, xt, k=200, batch=None)
    b = np.asarray(fitted.params["model"]["b"])
    exact = multivariate_normal(b, W @ W.T + S**2 * np.eye(D)).logpdf(np.asarray(xt))
    assert ll.shape == (50,)
    np.testing.assert_allclose(ll, exact, atol=0.05)  # q is (nearly) the exact posterior: weights are flat


@pytest.mark.slow
def test_collapse_report_on_a_model_with_an_unused_latent():
    W2 = np.concatenate([W[:, :1], np.zeros((D, 1))], axis=1)  # the second latent does not reach the data

    def m(x, batch=None):
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            z = numpyro.sample("z", dist.Normal(0, 1).expand([d]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ jnp.asarray(W2.T, jnp.float32), S).to_event(1), obs=x[idx])

    xs = X - jnp.asarray(B_TRUE, jnp.float32)
    res = provi.fit(m, xs, guide=guide, steps=3000, optimizer=OPT, progress=False, average=True, batch=50)
    c = res.posterior_collapse()
    site = c.sites["z"]
    assert site.kl.shape == (d,) and site.exact_kl
    assert list(site.active) == [True, False] and c.active_units == 1
    # exact KL of the fitted q against N(0, 1), per unit, averaged over the data
    enc = _encoder(res.params)
    mu = np.asarray(jax.vmap(enc)(xs))
    sd = np.exp(np.asarray(res.params["guide"]["log_sd"]))
    kl = np.mean(-np.log(sd) + (sd**2 + mu**2) / 2 - 0.5, axis=0)
    np.testing.assert_allclose(site.kl, kl, rtol=1e-4, atol=1e-5)
    assert site.kl[1] < 0.01 < site.kl[0]
    assert "1 of 2 latent units active" in str(res.diagnostics(n=200))


# --- per-data-point importance-weighted bounds: IWAE(plate=) and DReG(plate=) -------------------
XS = X[:24]


def _objective_draws(objective, reps, seed=0, batch=None, params=None, learn_b=False):
    """`reps` independent (value, gradient of the objective) pairs at the initial parameters."""
    mp, gp, data, layout, init = _programs(model, guide, XS, batch=batch, learn_b=learn_b)
    params = init if params is None else params
    loss = make_loss(mp, gp, objective, layout)

    def one(key):
        (_, value), grads = jax.value_and_grad(loss, has_aux=True)(params, {}, key, data)
        return value, jax.tree.map(jnp.negative, grads)

    values, grads = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), reps))
    return np.asarray(values), grads, params


def _exact_guide_params(params):
    enc = eqx.tree_at(lambda e: (e.weight, e.bias), _encoder(params), (jnp.asarray(POST_A, jnp.float32), jnp.asarray(-POST_A @ B_TRUE, jnp.float32)))
    guide_params = {**params["guide"], "encoder$params": eqx.partition(enc, eqx.is_inexact_array)[0], "log_sd": jnp.log(jnp.asarray(POST_SD, jnp.float32))}
    return {**params, "guide": guide_params}


def _iwae_by_hand(params, k, reps, seed=0):
    """E[sum_n log (1/k) sum_i p(x_n, z_ni) / q(z_ni | x_n)], by Monte Carlo in NumPy/SciPy."""
    rng = np.random.default_rng(seed)
    x = np.asarray(XS, np.float64)
    loc = np.asarray(jax.vmap(_encoder(params))(XS), np.float64)  # (N, d)
    sd = np.exp(np.asarray(params["guide"]["log_sd"], np.float64))
    z = loc + sd * rng.normal(size=(reps, k) + loc.shape)  # (reps, k, N, d)
    log_q = np.sum(-0.5 * ((z - loc) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi), -1)
    log_prior = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1)
    mean = z @ W.T + B_TRUE
    log_lik = np.sum(-0.5 * ((x - mean) / S) ** 2 - np.log(S) - 0.5 * np.log(2 * np.pi), -1)
    log_w = log_prior + log_lik - log_q  # (reps, k, N)
    per_point = np.logaddexp.reduce(log_w, axis=1) - np.log(k)
    return per_point.sum(-1)  # (reps,)


@pytest.mark.parametrize("objective", [provi.IWAE(k=4, plate="data"), provi.DReG(k=4, plate="data")])
def test_per_point_iwae_value_matches_its_definition_and_is_tighter(objective):
    values, _, params = _objective_draws(objective, 4000)
    oracle = _iwae_by_hand(params, 4, 20000)
    se = np.sqrt(values.var() / len(values) + oracle.var() / len(oracle))
    assert abs(values.mean() - oracle.mean()) < 4 * se
    pooled, _, _ = _objective_draws(provi.IWAE(k=4), 4000)
    elbo, _, _ = _objective_draws(provi.ELBO(), 4000)
    # one bound per data point is far tighter than one bound over all 24 points jointly
    assert values.mean() > pooled.mean() + 20 * np.sqrt(values.var() / 4000 + pooled.var() / 4000)
    assert pooled.mean() > elbo.mean()


def test_per_point_iwae_minibatch_is_unbiased_for_the_full_data_bound():
    full, _, _ = _objective_draws(provi.IWAE(k=3, plate="data"), 4000)
    mini, _, _ = _objective_draws(provi.IWAE(k=3, plate="data"), 4000, seed=1, batch=6)
    se = np.sqrt(full.var() / 4000 + mini.var() / 4000)
    assert abs(mini.mean() - full.mean()) < 4 * se and mini.std() > full.std()


def test_per_point_bounds_at_the_exact_posterior_give_the_exact_log_likelihood():
    exact = multivariate_normal(B_TRUE, W @ W.T + S**2 * np.eye(D)).logpdf(np.asarray(XS)).sum()
    _, _, init = _objective_draws(provi.ELBO(), 1)
    for objective in (provi.IWAE(k=5, plate="data"), provi.DReG(k=5, plate="data")):
        values, _, _ = _objective_draws(objective, 50, params=_exact_guide_params(init))
        np.testing.assert_allclose(values, exact, rtol=2e-5)  # every log weight is log p(x_n)


def test_per_point_dreg_gradient_is_unbiased_with_lower_variance_for_the_guide():
    """Near the exact posterior (sds 10% off), with k = 16: DReG's guide gradient has IWAE's mean
    and less variance (Tucker et al. 2019); the model's gradient is IWAE's, draw by draw."""
    reps, k = 3000, 16
    _, _, init = _objective_draws(provi.ELBO(), 1, learn_b=True)
    near = _exact_guide_params(init)
    near["guide"]["log_sd"] = near["guide"]["log_sd"] + 0.1
    near["model"] = {"b": jnp.asarray(B_TRUE, jnp.float32) + 0.1}
    _, g_iwae, _ = _objective_draws(provi.IWAE(k=k, plate="data"), reps, params=near, learn_b=True)
    _, g_dreg, _ = _objective_draws(provi.DReG(k=k, plate="data"), reps, params=near, learn_b=True)
    np.testing.assert_allclose(g_dreg["model"]["b"], g_iwae["model"]["b"], rtol=1e-3, atol=1e-3)
    a, b = np.asarray(g_iwae["guide"]["log_sd"]), np.asarray(g_dreg["guide"]["log_sd"])
    se = np.sqrt(a.var(0) / reps + b.var(0) / reps)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se)
    assert np.all(b.var(0) < a.var(0) / 4)


def test_per_point_dreg_guide_gradient_vanishes_at_the_exact_posterior():
    _, _, init = _objective_draws(provi.ELBO(), 1)
    exact = _exact_guide_params(init)
    _, g_dreg, _ = _objective_draws(provi.DReG(k=4, plate="data"), 200, params=exact)
    _, g_iwae, _ = _objective_draws(provi.IWAE(k=4, plate="data"), 200, params=exact)
    assert np.abs(np.asarray(g_dreg["guide"]["log_sd"])).max() < 1e-3  # all log weights are log p(x_n)
    assert np.asarray(g_iwae["guide"]["log_sd"]).std(0).min() > 1.0  # IWAE's is only zero on average


def test_per_point_bound_refuses_a_latent_outside_the_plate():
    def m(x, batch=None):
        loc = numpyro.sample("loc", dist.Normal(0, 1))
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            numpyro.sample("x", dist.Normal(loc, 1).expand([D]).to_event(1), obs=x[idx])

    def g(x, batch=None):
        numpyro.sample("loc", dist.Normal(numpyro.param("m", 0.0), 1.0))

    with pytest.raises(provi.errors.ObjectiveError, match=r"site\(s\) \['loc'\] lie outside"):
        provi.fit(m, XS, guide=g, objective=provi.IWAE(k=2, plate="data"), steps=2, progress=False)
    with pytest.raises(provi.errors.ModelError, match="NumPyro guide function"):
        provi.fit(m, XS, guide="meanfield", objective=provi.DReG(k=2, plate="data"), steps=2, progress=False)

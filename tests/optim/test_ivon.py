"""IVON against exact oracles: its deterministic limit (SGD with debiased momentum), the exact
posterior of Bayesian linear regression, the Price Hessian estimate, and sharded training."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from provi.optim import IVONGrads, ivon, ivon_posterior, ivon_sample, ivon_value_and_grad

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_deterministic_limit_is_sgd_with_debiased_momentum():
    """beta2 = 1 freezes h at hess_init and ess = 1e30 puts every draw at the mean: IVON's step is
    m <- m - lr * (momentum / (1 - beta1^t) + weight_decay * m), momentum an EMA of gradients."""
    lr, b1, wd, h0 = 0.05, 0.8, 0.01, 2.0
    A = jnp.array([[3.0, 0.5], [0.5, 1.0]])
    loss = lambda p: 0.5 * p["w"] @ A @ p["w"] - p["w"].sum()
    opt = ivon(lr, ess=1e30, hess_init=h0, beta1=b1, beta2=1.0, weight_decay=wd)
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    m, mom = np.array([1.0, -2.0]), np.zeros(2)
    step = jax.jit(lambda k, p, s: opt.update(opt.value_and_grad(loss)(k, p, s)[1], s, p))
    for t in range(1, 31):
        updates, state = step(jax.random.key(t), params, state)
        params = optax.apply_updates(params, updates)
        mom = b1 * mom + (1 - b1) * (np.asarray(A) @ m - 1.0)
        m = m - lr * (mom / (1 - b1**t) + wd * m)
        np.testing.assert_allclose(np.asarray(params["w"]), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(state.hess["w"]), h0)


def test_price_hessian_estimate_is_unbiased_on_a_quadratic():
    """g(theta) * (theta - m) / sigma^2 averages to diag(A) for the loss 0.5 theta' A theta."""
    A = jnp.array([[2.0, 0.7, 0.0], [0.7, 1.0, 0.3], [0.0, 0.3, 0.5]])
    loss = lambda p: 0.5 * p @ A @ p
    opt = ivon(0.1, ess=10.0, hess_init=0.5, weight_decay=0.1)
    params = jnp.array([0.3, -1.0, 2.0])
    state = opt.init(params)
    vg = jax.jit(jax.vmap(lambda k: opt.value_and_grad(loss)(k, params, state)[1].hess))
    draws = np.asarray(vg(jax.random.split(jax.random.key(0), 20_000)))
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(mean - np.diag(np.asarray(A))) < 4 * se), (mean, se)


def test_mc_samples_average_the_draws():
    """mc_samples = 4 gives the mean of the four single-draw estimates made with the same keys."""
    loss = lambda p, x: jnp.mean(jnp.tanh(p * x) ** 2)
    x = jnp.linspace(-1, 1, 7)
    opt = ivon(0.1, ess=5.0, hess_init=1.0, mc_samples=4)
    params = jnp.array([0.5, -0.2, 1.0, 0.1, 0.0, 2.0, -1.0])
    state = opt.init(params)
    key = jax.random.key(3)
    loss4, g4 = opt.value_and_grad(loss)(key, params, state, x)
    # the k-th draw uses the k-th of split(key, 4): redo the four draws by hand
    thetas = [ivon_sample(k, params, state) for k in jax.random.split(key, 4)]
    grads = [jax.grad(loss)(t, x) for t in thetas]
    np.testing.assert_allclose(np.asarray(g4.grad), np.mean(np.stack(grads), 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(loss4), np.mean([float(loss(t, x)) for t in thetas]), rtol=1e-6)
    nxg = np.mean(np.stack([g * (t - params) for g, t in zip(grads, thetas)]), 0)
    np.testing.assert_allclose(np.asarray(g4.hess), nxg * 5.0 * (1.0 + 1e-4), rtol=1e-4, atol=1e-6)


def _fit_blr(seed, X, y, noise_sd, ess, wd, steps):
    loss = lambda w: 0.5 * jnp.mean((y - X @ w) ** 2) / noise_sd**2
    opt = ivon(optax.linear_schedule(0.2, 0.02, steps // 2), ess=ess, hess_init=1.0, beta1=0.9, beta2=0.999, weight_decay=wd)
    params = jnp.zeros(X.shape[1])
    state = opt.init(params)

    def step(carry, key):
        params, state = carry
        _, grads = opt.value_and_grad(loss)(key, params, state)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        post = ivon_posterior(params, state)
        return (params, state), (post.mean, post.scale**2)

    keys = jax.random.split(jax.random.key(seed), steps)
    _, (means, variances) = jax.lax.scan(step, (params, state), keys)
    tail = steps // 2
    return means[-tail:].mean(0), variances[-tail:].mean(0)


def test_bayesian_linear_regression_posterior():
    """With ess = N and weight_decay = prior precision / N, IVON's mean is the exact posterior mean
    and its variance the mean-field optimum 1 / diag(posterior precision) (the exact posterior
    variances where the design's columns are orthogonal). Checked over 8 seeds in standard errors."""
    rng = np.random.default_rng(0)
    N, D, noise_sd, prior_prec = 200, 3, 0.5, 2.0
    X = rng.normal(size=(N, D)) @ np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    y = X @ np.array([1.0, -0.5, 0.25]) + noise_sd * rng.normal(size=N)
    precision = X.T @ X / noise_sd**2 + prior_prec * np.eye(D)
    exact_mean = np.linalg.solve(precision, X.T @ y / noise_sd**2)
    mf_var = 1.0 / np.diag(precision)
    fit = jax.jit(jax.vmap(lambda s: _fit_blr(s, jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32), noise_sd, float(N), prior_prec / N, 20_000)))
    means, variances = (np.asarray(a) for a in fit(jnp.arange(8)))
    for est, truth in ((means, exact_mean), (variances, mf_var)):
        centre, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(len(est))
        assert np.all(np.abs(centre - truth) < 4 * se + 0.01 * np.abs(truth)), (centre, truth, se)
    # the oracle discriminates: the exact marginal variances of the correlated posterior differ
    exact_var = np.diag(np.linalg.inv(precision))
    assert np.all(np.abs(variances.mean(0) - exact_var) > 0.05 * exact_var)


def test_update_refuses_plain_gradients():
    opt = ivon(0.1, ess=10.0)
    params = jnp.zeros(2)
    state = opt.init(params)
    with pytest.raises(TypeError, match="IVONGrads"):
        opt.update(jnp.ones(2), state, params)
    with pytest.raises(ValueError, match="ess"):
        ivon(0.1, ess=0.0)
    with pytest.raises(ValueError, match="mc_samples"):
        ivon_value_and_grad(lambda p: p.sum(), mc_samples=0)
    assert isinstance(opt.value_and_grad(lambda p: jnp.sum(p**2))(jax.random.key(0), params, state)[1], IVONGrads)


def test_trains_an_equinox_network_under_jit_and_its_posterior_samples():
    """A small MLP on a noisy sine: IVON's loss falls as Adam's does, and the posterior's draws
    have the learned scale."""
    key = jax.random.key(0)
    x = jnp.linspace(-3, 3, 128)[:, None]
    y = jnp.sin(x[:, 0]) + 0.1 * jax.random.normal(key, (128,))
    net = eqx.nn.MLP(1, 1, 32, 2, key=jax.random.key(1))
    params, static = eqx.partition(net, eqx.is_inexact_array)

    def loss(p, x, y):
        model = eqx.combine(p, static)
        return jnp.mean((jax.vmap(model)(x)[:, 0] - y) ** 2)

    opt = ivon(0.05, ess=128.0, hess_init=1.0, weight_decay=1e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, k):
        value, grads = opt.value_and_grad(loss)(k, params, state, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    first = float(loss(params, x, y))
    for t in range(1500):
        params, state, _ = step(params, state, jax.random.key(t))
    assert float(loss(params, x, y)) < 0.2 * first
    post = ivon_posterior(params, state)
    draws = post.sample(jax.random.key(9), (2000,))
    leaf, scale, mean = jax.tree.leaves(draws)[0], jax.tree.leaves(post.scale)[0], jax.tree.leaves(post.mean)[0]
    se = scale / np.sqrt(2000)
    assert np.all(np.abs(np.asarray(leaf.mean(0) - mean)) < 5 * np.asarray(se))
    assert np.isfinite(float(post.log_prob(params)))


def test_sharded_data_training_matches_one_device():
    """Under jit with the batch sharded over 4 CPU devices, IVON's steps equal one device's."""
    body = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np, optax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from provi.optim import ivon
        assert len(jax.devices()) == 4
        rng = np.random.default_rng(0)
        X = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
        y = jnp.asarray(rng.normal(size=64), jnp.float32)
        loss = lambda w, X, y: jnp.mean((jnp.tanh(X @ w) - y) ** 2)
        opt = ivon(0.1, ess=64.0, hess_init=1.0, mc_samples=2)

        def train(X, y):
            w = jnp.zeros(5); s = opt.init(w)
            def step(c, k):
                w, s = c
                _, g = opt.value_and_grad(loss)(k, w, s, X, y)
                u, s = opt.update(g, s, w)
                return (optax.apply_updates(w, u), s), None
            (w, s), _ = jax.lax.scan(step, (w, s), jax.random.split(jax.random.key(0), 200))
            return w, s.hess

        mesh = Mesh(np.array(jax.devices()), ("data",))
        Xs = jax.device_put(X, NamedSharding(mesh, P("data")))
        ys = jax.device_put(y, NamedSharding(mesh, P("data")))
        one = jax.jit(train)(X, y)
        many = jax.jit(train)(Xs, ys)
        for a, b in zip(one, many):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        print("OK")
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-W", "error", "-c", body], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-2000:] + proc.stderr[-4000:]


def test_axis_name_averages_across_a_mapped_axis():
    """With axis_name, each shard's gradient and Hessian estimate become the mean over shards."""
    loss = lambda w, x: jnp.mean((w * x) ** 2)
    opt = ivon(0.1, ess=8.0)
    w = jnp.array([0.5, -1.0])
    state = opt.init(w)
    xs = jnp.arange(8.0).reshape(4, 2)
    key = jax.random.key(0)
    per = jax.vmap(lambda x: opt.value_and_grad(loss)(key, w, state, x)[1])(xs)
    pooled = jax.vmap(lambda x: opt.value_and_grad(loss, axis_name="d")(key, w, state, x)[1], axis_name="d")(xs)
    np.testing.assert_allclose(np.asarray(pooled.grad[0]), np.asarray(per.grad.mean(0)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pooled.hess[2]), np.asarray(per.hess.mean(0)), rtol=1e-6)

"""provi.kernels against brute force: the Stein direction and the kernelised Stein discrepancy
computed pair by pair with autodiff, in a general metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from provi.kernels import IMQ, RBF, Preconditioned, RandomFeatures, ksd, median_bandwidth, stein_direction

N, D = 7, 3


def _setup(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (N, D))
    score = jax.random.normal(k2, (N, D))
    a = jax.random.normal(k3, (D, D))
    return x, score, a @ a.T + D * jnp.eye(D)


def _scalar(kernel, h, M):
    return lambda a, b: kernel.profile((a - b) @ M @ (a - b) / h)


@pytest.mark.parametrize("block", [None, 3])
@pytest.mark.parametrize("kernel", [RBF(bandwidth=1.7), IMQ(c=0.5, beta=-0.3, bandwidth=2.0), RBF(), IMQ()])
def test_stein_direction_matches_pairwise_definition(kernel, block):
    x, score, M = _setup()
    phi, info = stein_direction(kernel, x, score, M, block=block)
    k = _scalar(kernel, info.bandwidth, M)
    grad_first = jax.grad(k, argnums=0)
    want = np.zeros((N, D))
    for i in range(N):
        for j in range(N):
            want[i] += np.linalg.solve(np.asarray(M), np.asarray(k(x[j], x[i]) * score[j] + grad_first(x[j], x[i])))
    np.testing.assert_allclose(phi, want / N, rtol=2e-4, atol=1e-6)


def test_blocked_direction_is_the_whole_matrix_one_in_a_fraction_of_the_memory():
    """Past BLOCK_ROWS particles the Gram matrix goes a block of rows at a time: the same direction
    at a fixed bandwidth; with the median heuristic, the bandwidth from a subset of particles is
    within 10% of the median over all pairs, and the compiled program's temporary memory is under
    a tenth of the whole matrix's (which holds every pair for the median) at n = 4,000."""
    n, d = 4000, 3
    x = jax.random.normal(jax.random.PRNGKey(3), (n, d))
    for kernel in (RBF(bandwidth=2.0), IMQ(bandwidth=1.5)):
        whole = stein_direction(kernel, x, -x, block=n)[0]
        np.testing.assert_allclose(stein_direction(kernel, x, -x, block=300)[0], whole, rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(stein_direction(kernel, x, -x)[0], whole, rtol=2e-4, atol=2e-6)
    whole = jax.jit(lambda x: stein_direction(RBF(), x, -x, block=n))
    blocked = jax.jit(lambda x: stein_direction(RBF(), x, -x))
    assert abs(float(blocked(x)[1].bandwidth) / float(whole(x)[1].bandwidth) - 1.0) < 0.1
    temp = [f.lower(x).compile().memory_analysis().temp_size_in_bytes for f in (whole, blocked)]
    assert temp[0] > n * n * 4 and temp[1] < 0.1 * temp[0], temp


@pytest.mark.parametrize("kernel", [RBF(bandwidth=1.3), IMQ(bandwidth=0.7)])
def test_ksd_matches_stein_kernel_by_autodiff(kernel):
    x, score, M = _setup(1)
    k = _scalar(kernel, kernel.bandwidth, M)
    gx, gy = jax.grad(k, 0), jax.grad(k, 1)
    gxy = jax.jacfwd(jax.grad(k, 1), 0)
    total = 0.0
    for i in range(N):
        for j in range(N):
            a, b, sa, sb = x[i], x[j], score[i], score[j]
            total += k(a, b) * sa @ sb + sa @ gy(a, b) + sb @ gx(a, b) + jnp.trace(gxy(a, b))
    np.testing.assert_allclose(ksd(kernel, x, score, M), np.sqrt(total / N**2), rtol=2e-4)


@pytest.mark.parametrize("metric", [False, True])
def test_random_features_give_the_rbf_direction_on_average(metric):
    """Each step's random-feature kernel is an unbiased estimate of the RBF kernel and of its
    gradient, so the Stein direction is too: its mean over feature draws matches the exact RBF
    direction within 4 standard errors, in the identity and in a general metric."""
    x, score, M = _setup(3)
    M = M if metric else None
    exact, _ = stein_direction(RBF(bandwidth=2.5), x, score, M)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    draws = jax.vmap(lambda k: stein_direction(RandomFeatures(64, bandwidth=2.5), x, score, M, key=k)[0])(keys)
    mean, se = np.mean(draws, 0), np.std(draws, 0) / np.sqrt(len(keys))
    assert np.all(np.abs(mean - exact) < 4 * se + 1e-6), np.max(np.abs(mean - exact) / se)
    with pytest.raises(ValueError, match="needs a key"):
        stein_direction(RandomFeatures(), x, score)


def test_median_heuristic_and_preconditioned_metrics():
    x, score, _ = _setup(2)
    r2 = np.sum((np.asarray(x)[:, None] - np.asarray(x)[None]) ** 2, -1)
    off = r2[~np.eye(N, dtype=bool)]
    np.testing.assert_allclose(median_bandwidth(jnp.asarray(r2)), np.median(off) / np.log(N + 1), rtol=1e-5)
    _, info = stein_direction(Preconditioned(RBF(), by="mode"), x, score)
    np.testing.assert_allclose(info.metric, np.eye(D))
    _, info = stein_direction(Preconditioned(RBF(), by="fisher", ridge=0.0), x, score)
    np.testing.assert_allclose(info.metric, np.asarray(score).T @ np.asarray(score) / N, rtol=1e-4, atol=1e-6)
    # a mean Hessian: indefinite directions by their absolute curvature, tiny ones floored at ridge x mean
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))
    lam = np.linspace(-2.0, 3.0, D)
    lam[1] = 1e-9
    h = (q * lam) @ q.T
    _, info = stein_direction(Preconditioned(RBF(), by="hessian", ridge=0.1), x, score, curvature=jnp.asarray(h))
    want = np.abs(lam)
    want = np.maximum(want, 0.1 * want.mean())
    np.testing.assert_allclose(info.metric, (q * want) @ q.T, rtol=1e-4, atol=1e-5)


def test_ksd_of_target_draws_is_small_and_shrinks():
    key = jax.random.PRNGKey(3)
    small = jax.random.normal(key, (100, 2))
    big = jax.random.normal(key, (1600, 2))
    shifted = big + 0.5
    k = IMQ()
    assert ksd(k, big, -big) < 0.5 * ksd(k, small, -small)  # V-statistic bias shrinks like 1/sqrt(n)
    assert ksd(k, shifted, -shifted) > 3 * ksd(k, big, -big)


def test_bad_kernels_are_refused():
    with pytest.raises(ValueError, match="beta"):
        IMQ(beta=0.5)
    with pytest.raises(ValueError, match="mode"):
        Preconditioned(RBF(), by="newton")
    with pytest.raises(ValueError, match="decay"):
        Preconditioned(RBF(), by="fisher", decay=1.0)
    with pytest.raises(ValueError, match="fixed one"):
        Preconditioned(RBF(), by="mode", decay=0.5)
    with pytest.raises(ValueError, match="subset"):
        Preconditioned(RBF(), by="fisher", subset=4)
    x, score, _ = _setup(2)
    with pytest.raises(ValueError, match="curvature="):
        stein_direction(Preconditioned(RBF(), by="hessian"), x, score)

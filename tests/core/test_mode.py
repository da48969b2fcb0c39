"""The host-driven Newton search of `provi.core.mode` against exact answers; Laplace masses and
distinct modes."""

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.mode import distinct_modes, laplace_log_mass, newton_decrement, newton_mode, value_grad_curvature


def _vgh(log_density):
    return jax.jit(lambda u: value_grad_curvature(log_density, u))


def test_value_grad_curvature_is_exact_on_a_gaussian():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    prec = a @ a.T + 4 * np.eye(4)
    mean = rng.normal(size=4)
    f = lambda u: -0.5 * (u - mean) @ prec @ (u - mean)
    u = rng.normal(size=4)
    v, g, h = jax.device_get(_vgh(f)(jnp.asarray(u, jnp.float32)))
    np.testing.assert_allclose(v, f(u), rtol=1e-5)
    np.testing.assert_allclose(g, -prec @ (u - mean), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h, prec, rtol=1e-5)


def test_newton_finds_the_mode_and_precision_of_a_correlated_gaussian():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    prec = a @ a.T + 0.1 * np.eye(6)  # ill-conditioned
    mean = 10 * rng.normal(size=6)
    f = lambda u: -0.5 * (u - mean) @ jnp.asarray(prec, jnp.float32) @ (u - mean)
    mode = newton_mode(_vgh(f), np.zeros(6))
    np.testing.assert_allclose(mode.u, mean, atol=1e-3 * np.abs(mean).max())
    np.testing.assert_allclose(mode.curvature, prec, rtol=1e-4)
    assert mode.iterations < 15
    assert newton_decrement(mode.curvature, mode.gradient) < 1e-6


def test_newton_damps_through_negative_curvature():
    # log density of a Cauchy at 3: at 0 the curvature has the wrong sign for a Newton step
    f = lambda u: -jnp.sum(jnp.log1p((u - 3.0) ** 2))
    vgh = _vgh(f)
    _, _, h0 = jax.device_get(vgh(jnp.zeros(1)))
    assert h0[0, 0] < 0  # not positive definite where the search starts
    mode = newton_mode(vgh, np.zeros(1))
    np.testing.assert_allclose(mode.u, [3.0], atol=1e-4)
    assert float(mode.grad_norm) < 1e-4


def test_newton_stops_at_a_start_that_is_not_finite():
    f = lambda u: jnp.sum(jnp.log(u))  # -inf at zero
    mode = newton_mode(_vgh(f), np.zeros(2))
    assert int(mode.iterations) == 1 and not np.isfinite(mode.log_density)


def test_newton_decrement_is_infinite_off_positive_definite():
    assert newton_decrement(-np.eye(2), np.ones(2)) == float("inf")
    np.testing.assert_allclose(newton_decrement(np.diag([4.0, 1.0]), np.array([2.0, 1.0])), 2.0)


def test_lbfgs_start_above_newton_dimension_gives_the_exact_laplace_answer():
    """Above `NEWTON_MAX_DIM` the mode comes from the compiled L-BFGS program and the curvature
    there; on a conjugate Gaussian the Laplace approximation is the exact posterior."""
    import numpyro
    import numpyro.distributions as dist

    import provi
    from provi.defaults import NEWTON_MAX_DIM

    d = NEWTON_MAX_DIM + 50

    def model(y):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        numpyro.sample("y", dist.Normal(z, 0.5).to_event(1), obs=y)

    y = np.random.default_rng(0).normal(size=d).astype(np.float32)
    res = provi.fit(model, y, guide="laplace", progress=False)
    assert not res.stop.notes
    n = 4000
    z = res.sample(n, seed=0)["z"]
    post_mean, post_sd = 0.8 * y, np.sqrt(0.2)
    assert np.max(np.abs(z.mean(0) - post_mean)) < 5 * post_sd / np.sqrt(n)
    np.testing.assert_allclose(z.std(0).mean(), post_sd, rtol=0.01)


def test_laplace_mass_is_exact_for_a_gaussian_and_modes_are_told_apart():
    """log p = c - (u - m)' H (u - m) / 2 has mass c + D/2 log(2 pi) - log det(H) / 2 exactly; a
    two-bump density searched from several starts gives one mode per bump, ranked by mass."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3))
    prec = a @ a.T + np.eye(3)
    mean = rng.normal(size=3)
    f = lambda u: 1.5 - 0.5 * (u - mean) @ prec @ (u - mean)  # noqa: E731
    mode = newton_mode(_vgh(f), np.zeros(3))
    exact = 1.5 + 1.5 * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(prec)[1]
    assert abs(laplace_log_mass(mode) - exact) < 1e-3

    def bumps(u):  # 0.3 N(-3, 0.5) + 0.7 N(2, 0.4), unnormalised as a mixture density
        return jnp.logaddexp(jnp.log(0.3) - 0.5 * ((u[0] + 3) / 0.5) ** 2 - jnp.log(0.5),
                             jnp.log(0.7) - 0.5 * ((u[0] - 2) / 0.4) ** 2 - jnp.log(0.4))

    vgh = _vgh(bumps)
    modes = [newton_mode(vgh, np.array([x])) for x in (-4.0, -2.5, 1.0, 2.5, 3.0)]
    found = distinct_modes(modes)
    assert len(found) == 2 and abs(float(modes[found[0][0]].u[0]) - 2) < 1e-3 and abs(float(modes[found[1][0]].u[0]) + 3) < 1e-3
    weights = np.exp(np.array([m for _, m in found]) - np.logaddexp(*[m for _, m in found]))
    np.testing.assert_allclose(weights, [0.7, 0.3], atol=1e-3)  # well separated: Laplace is exact per bump

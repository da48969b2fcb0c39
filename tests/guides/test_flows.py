"""Flows: invertible, log-determinants equal to jax.jacfwd's, normalised densities that match their samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provi
from provi.guides import IAF, NeuralSplineFlow, Planar, Radial, RealNVP

FLOWS = [RealNVP(layers=4, hidden=16), IAF(layers=3, hidden=16), NeuralSplineFlow(layers=3, hidden=16), Planar(layers=4), Radial(layers=4)]
IDS = [type(f).__name__ for f in FLOWS]


def _perturbed(flow, dim, scale=0.1, seed=0):
    """Parameters away from the identity, so the tests exercise real nonlinear layers."""
    p = flow.init(jax.random.PRNGKey(seed), dim, jnp.zeros(dim), jnp.ones(dim))
    leaves, tree = jax.tree.flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_identity_at_init(flow):
    """A new flow is the base normal N(loc, diag(scale^2)): identity layers."""
    p = flow.init(jax.random.PRNGKey(0), 3, jnp.zeros(3), jnp.ones(3))
    x = jnp.array([0.3, -1.2, 2.0])
    v, ld = flow.forward(p, x)
    np.testing.assert_allclose(v, x, atol=1e-6)
    assert abs(float(ld)) < 1e-6


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
@pytest.mark.parametrize("dim", [1, 4])
def test_invertible_and_logdet_matches_jacfwd(flow, dim):
    p = _perturbed(flow, dim)

    @jax.jit
    def check(x):
        v, ld = flow.forward(p, x)
        x2, ld2 = flow.inverse(p, v)
        jac = jax.jacfwd(lambda y: flow.forward(p, y)[0])(x)
        return x2, ld, ld2, jnp.linalg.slogdet(jac)

    for i in range(3):
        x = jax.random.normal(jax.random.PRNGKey(10 + i), (dim,))
        x2, ld, ld2, (sign, logdet) = check(x)
        np.testing.assert_allclose(x2, x, atol=1e-4, rtol=1e-4)
        assert float(sign) > 0
        np.testing.assert_allclose(ld, logdet, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(ld2, logdet, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_sample_log_q_equals_log_prob(flow):
    p = _perturbed(flow, 3)
    v, log_q = jax.jit(lambda p: flow.sample(p, jax.random.PRNGKey(3), 64))(p)
    np.testing.assert_allclose(log_q, jax.jit(flow.log_prob)(p, v), atol=1e-3, rtol=1e-4)


def _grid(lim=7.0, n=701):
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32), (g[1] - g[0]) ** 2


def check_normalised_and_matches_samples(family, params, n=20_000):
    """On R^2: the density integrates to 1 (grid), and the sample mean and second moments agree with
    the grid moments of the density within 5 standard errors."""
    pts, cell = _grid()
    dens = np.exp(np.asarray(jax.jit(family.log_prob)(params, pts), np.float64))
    assert abs(dens.sum() * cell - 1.0) < 5e-3
    grid_m1 = (dens[:, None] * np.asarray(pts)).sum(0) * cell
    grid_m2 = (dens[:, None] * np.asarray(pts) ** 2).sum(0) * cell
    v, _ = jax.jit(lambda p: family.sample(p, jax.random.PRNGKey(7), n))(params)
    v = np.asarray(v, np.float64)
    for f, target in ((v, grid_m1), (v**2, grid_m2)):
        se = f.std(0) / np.sqrt(n)
        assert np.all(np.abs(f.mean(0) - target) < 5 * se + 1e-3), (f.mean(0), target, se)


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_normalised_and_samples_match_density(flow):
    p = _perturbed(flow, 2, scale=0.2)
    p["log_scale"] = p["log_scale"] - 1.0  # narrower, so the grid holds all the mass
    check_normalised_and_matches_samples(flow, p)


def _model(y):
    import numpyro
    import numpyro.distributions as dist

    s = numpyro.sample("s", dist.HalfNormal(2.0))
    m = numpyro.sample("m", dist.Normal(0.0, 3.0))
    numpyro.sample("y", dist.Normal(m, s), obs=y)


@pytest.mark.parametrize("flow", [RealNVP(layers=2, hidden=8), IAF(layers=2, hidden=8), NeuralSplineFlow(layers=2, hidden=8), Planar(layers=2), Radial(layers=2)], ids=IDS)
def test_fit_with_path_gradient(flow):
    """Every flow fits with the path-derivative (STL) ELBO, which evaluates density(detach(guide), z)."""
    from provi.auto import path_elbo

    y = jnp.asarray(np.random.default_rng(0).normal(1.0, 0.7, size=20), jnp.float32)
    res = provi.fit(_model, y, guide=flow, objective=path_elbo, steps=300, progress=False)
    assert np.all(np.isfinite(res.losses))
    assert res.losses[-50:].mean() < res.losses[:50].mean() + 1.0
    s = res.sample(200)
    assert np.all(np.isfinite(s["m"])) and np.all(s["s"] > 0)

"""The unconstrained latent space: round trips through every common NumPyro support, and
log-determinants of the constraining map against automatic differentiation."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from provi.core.model import inspect_model
from provi.core.space import LatentSpace

SUPPORTS = {
    "real": dist.Normal(0.0, 1.0),
    "positive": dist.Gamma(2.0, 1.0),
    "interval": dist.Uniform(-1.0, 3.0),
    "unit": dist.Beta(2.0, 2.0),
    "simplex": dist.Dirichlet(jnp.ones(4)),
    "ordered": dist.ImproperUniform(dist.constraints.ordered_vector, (), (3,)),
    "corr_cholesky": dist.LKJCholesky(3, 2.0),
    "lower_cholesky": dist.ImproperUniform(dist.constraints.lower_cholesky, (), (3, 3)),
    "vector_positive": dist.HalfNormal(jnp.ones(5)).to_event(1),
    "flat": dist.ImproperUniform(dist.constraints.real, (2,), ()),
}


def _space(name):
    def model():
        numpyro.sample("x", SUPPORTS[name])

    return LatentSpace.of(inspect_model(model, (), {}).latents)


@pytest.mark.parametrize("name", sorted(SUPPORTS))
def test_round_trip(name):
    space = _space(name)
    u = jax.random.normal(jax.random.PRNGKey(1), (space.dim,))
    z, _ = space.constrain(u)
    assert bool(jnp.all(SUPPORTS[name].support(z["x"])))
    np.testing.assert_allclose(space.unconstrain(z), u, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("name", ["real", "positive", "interval", "unit", "simplex", "ordered", "vector_positive"])
def test_log_det_jacobian_matches_autodiff(name):
    """For maps R^D -> R^D (the simplex's log-det is that of the map onto its first D coordinates)."""
    space = _space(name)
    u = 0.5 * jax.random.normal(jax.random.PRNGKey(2), (space.dim,))

    def f(u):
        x = jnp.reshape(space.constrain(u)[0]["x"], (-1,))
        return x[: space.dim]

    J = jax.jacfwd(f)(u)
    expected = jnp.linalg.slogdet(J)[1]
    _, ldj = space.constrain(u)
    np.testing.assert_allclose(ldj, expected, rtol=1e-4, atol=1e-4)


def test_labels_and_flatten():
    def model():
        numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("b", dist.Normal(jnp.zeros((2, 2)), 1).to_event(2))

    space = LatentSpace.of(inspect_model(model, (), {}).latents)
    assert space.dim == 5
    assert space.labels() == ["a", "b[0,0]", "b[0,1]", "b[1,0]", "b[1,1]"]
    u = jnp.arange(5.0)
    np.testing.assert_array_equal(space.flatten(space.unflatten(u)), u)

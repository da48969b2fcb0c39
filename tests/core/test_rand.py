"""provi.core.rand draws flat for the compiler's sake; the values must be JAX's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from provi.core import rand


@pytest.mark.parametrize("shape", [(), (7,), (1, 10), (3, 4), (2, 3, 5)])
def test_flat_draws_equal_jax_draws(shape):
    key = jax.random.PRNGKey(11)
    pairs = [
        (rand.normal(key, shape, jnp.float32), jax.random.normal(key, shape, jnp.float32)),
        (rand.uniform(key, shape, jnp.float32, 0.5, 2.0), jax.random.uniform(key, shape, jnp.float32, 0.5, 2.0)),
        (rand.gumbel(key, shape, jnp.float32), jax.random.gumbel(key, shape, jnp.float32)),
    ]
    for got, want in pairs:
        assert got.shape == shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

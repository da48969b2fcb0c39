"""Models with discrete sites enumerated in the model, and their data: a 3-component Gaussian
mixture and a Dawid-Skene annotation model. `tests/integration/test_enumerated_fits.py` holds
provi's fits to NUTS reference moments (`tests/data/*_reference.json`, made by
`python tests/data/make_references.py`); `benchmarks/enumeration.py` times them against NumPyro
and Pyro."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

# each site gets its own infer dict: NumPyro (the NUTS reference) writes into the dict it is given


def mixture(x, centres=(-4.0, 0.0, 4.0)):
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(jnp.array(centres), 1.0).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("n", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(mu[z], sigma), obs=x)


def mixture_data(locs=(-4.0, 0.0, 4.0)) -> np.ndarray:
    """150 points from three unit-variance components of 40, 60 and 50 points at `locs`."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(locs[0], 1, 40), rng.normal(locs[1], 1, 60), rng.normal(locs[2], 1, 50)]).astype(np.float32)


def annotation(labels):
    pi = numpyro.sample("pi", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("annotator", labels.shape[1], dim=-2):
        with numpyro.plate("class", 3, dim=-1):
            beta = numpyro.sample("beta", dist.Dirichlet(jnp.ones(3) + 4.0 * jnp.eye(3)))
    with numpyro.plate("item", labels.shape[0], dim=-2):
        c = numpyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
        with numpyro.plate("position", labels.shape[1], dim=-1):
            numpyro.sample("y", dist.Categorical(beta[jnp.arange(labels.shape[1]), c]), obs=labels)


def annotation_data() -> tuple[np.ndarray, np.ndarray]:
    """`(labels, truth)`: 60 items of 3 classes, each labelled by 4 annotators of accuracy 0.9,
    0.75, 0.6 and 0.8 (a wrong label is uniform over the classes)."""
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 60)
    acc = np.array([0.9, 0.75, 0.6, 0.8])
    labels = np.where(rng.random((60, 4)) < acc, truth[:, None], rng.integers(0, 3, (60, 4)))
    return labels, truth

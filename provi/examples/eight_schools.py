"""The eight schools model (Rubin 1981), non-centered: provi's built-in example."""

import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["model", "DATA"]

DATA = {
    "J": 8,
    "y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32),
    "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32),
}


def model(J, sigma, y=None):
    """Treatment effects theta = mu + tau * theta_trans of J schools, observed with known sd `sigma`."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

"""The "cone" model of Becker, Lew et al. (PLDI 2024), Section 7 / Table 4.

    x, y ~ Normal(0, 10);  z ~ Normal(x^2 + y^2, 0.1 + (x^2 + y^2) / 100), observed z = 5.

The posterior is a thin ring of radius sqrt(5). A naive mean-field guide is trained with the ELBO
and with IWAE (k = 5); an expressive hierarchical guide, with an auxiliary angle u ~ Uniform(0, 1)
and x ~ Normal(sqrt(z) cos 2 pi u, s1), y ~ Normal(sqrt(z) sin 2 pi u, s2), is trained with HVI,
IWHVI and DIWHVI (the angle marginalised by importance sampling). Each trained guide is scored by
its own objective, printed beside the paper's Table 4.

    python examples/cone.py            # the full run
    python examples/cone.py --quick    # a short run (the test suite runs this)
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints

import provi

Z_OBS = 5.0
PAPER = {"ELBO": -8.08, "IWELBO(5)": -7.79, "HVI": -9.75, "IWHVI": -8.18, "DIWHVI": -7.33}


def cone(z):
    x = numpyro.sample("x", dist.Normal(0.0, 10.0))
    y = numpyro.sample("y", dist.Normal(0.0, 10.0))
    r2 = x**2 + y**2
    numpyro.sample("z", dist.Normal(r2, 0.1 + r2 / 100), obs=z)


def naive_guide(z):
    """Mean field: independent normals for x and y."""
    mx = numpyro.param("mx", 0.5)
    my = numpyro.param("my", 0.5)
    sx = numpyro.param("sx", 1.0, constraint=constraints.positive)
    sy = numpyro.param("sy", 1.0, constraint=constraints.positive)
    numpyro.sample("x", dist.Normal(mx, sx))
    numpyro.sample("y", dist.Normal(my, sy))


def ring_guide(z):
    """An auxiliary angle u places (x, y) near the circle of radius sqrt(z)."""
    s1 = numpyro.param("s1", 1.0, constraint=constraints.positive)
    s2 = numpyro.param("s2", 1.0, constraint=constraints.positive)
    u = numpyro.sample("u", dist.Uniform(0.0, 1.0), infer={"is_auxiliary": True})
    r = jnp.sqrt(z)
    numpyro.sample("x", dist.Normal(r * jnp.cos(2 * jnp.pi * u), s1))
    numpyro.sample("y", dist.Normal(r * jnp.sin(2 * jnp.pi * u), s2))


def log_evidence(z=Z_OBS, n=200_001):
    """log p(z) by quadrature over rho = x^2 + y^2 (x, y ~ N(0, 10^2) gives rho ~ Exp(1/200))."""
    rho = np.linspace(0.0, 60.0, n)
    sd = 0.1 + rho / 100
    dens = np.exp(-rho / 200) / 200 * np.exp(-0.5 * ((z - rho) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    return float(np.log(np.trapezoid(dens, rho)))


def run(quick: bool = False, seed: int = 0) -> dict:
    steps, n_eval, lr = (800, 500, 5e-2) if quick else (5000, 20_000, 1e-2)
    runs = {
        "ELBO": (naive_guide, provi.ELBO()),
        "IWELBO(5)": (naive_guide, provi.IWAE(k=5)),
        "HVI": (ring_guide, provi.HVI()),
        "IWHVI": (ring_guide, provi.IWHVI(k=1, m=5)),
        "DIWHVI": (ring_guide, provi.DIWHVI(k=5, m=5)),
    }
    table = {}
    z = jnp.asarray(Z_OBS)
    for name, (guide, objective) in runs.items():
        res = provi.fit(cone, z, guide=guide, objective=objective, optimizer=optax.adam(lr), steps=steps, seed=seed, progress=False)
        table[name] = res.evaluate(objective, n=n_eval, seed=seed + 1)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    table = run(opts.quick, opts.seed)
    print(f"log p(z = 5) by quadrature: {log_evidence():.3f}")
    print(f"{'objective':<12}{'paper':>9}{'provi':>9}{'+- se':>8}")
    for name, (value, se) in table.items():
        print(f"{name:<12}{PAPER[name]:>9.2f}{value:>9.2f}{se:>8.3f}")
    return table


if __name__ == "__main__":
    main()

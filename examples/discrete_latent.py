"""A two-layer sigmoid belief network on generated binary data, fitted with each of provi's
discrete-latent gradient estimators, chosen per guide site.

    python examples/discrete_latent.py           # 3000 steps per estimator
    python examples/discrete_latent.py --quick   # a few hundred steps (the test suite runs this)

Model: z2 ~ Bernoulli(1/2)^H2, z1 | z2 ~ Bernoulli(sigmoid(z2 U))^H1, x | z1 ~ Bernoulli(sigmoid(z1 W + b))^D,
with U, W, b learned (numpyro.param in the model). Guide: z1 | x and z2 | z1, Bernoulli with
learned affine logits. Every estimator fits the same ELBO; only the gradient estimate differs (the
"per-row signals" configurations declare the data plate, `provi.ELBO(plate="N")`, so that each row's
score is weighted by that row's terms only).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

import provi
from provi.estimators import MVD, Enumerate, LeaveOneOut, Learned, Reinforce, RunningAverage

H1, H2 = 4, 2


def sbn(x):
    n, d = x.shape
    # model parameters start from NumPy constants (provi inspects the model under an abstract trace)
    U = numpyro.param("U", np.zeros((H2, H1), np.float32))
    W = numpyro.param("W", np.zeros((H1, d), np.float32))
    b = numpyro.param("b", np.zeros((d,), np.float32))
    with numpyro.plate("N", n):
        z2 = numpyro.sample("z2", dist.Bernoulli(probs=0.5 * jnp.ones(H2)).to_event(1))
        z1 = numpyro.sample("z1", dist.Bernoulli(logits=z2 @ U).to_event(1))
        numpyro.sample("x", dist.Bernoulli(logits=z1 @ W + b).to_event(1), obs=x)


def sbn_guide(x):
    n, d = x.shape
    V1 = numpyro.param("V1", jnp.zeros((d, H1)))
    c1 = numpyro.param("c1", jnp.zeros((H1,)))
    V2 = numpyro.param("V2", jnp.zeros((H1, H2)))
    c2 = numpyro.param("c2", jnp.zeros((H2,)))
    with numpyro.plate("N", n):
        z1 = numpyro.sample("z1", dist.Bernoulli(logits=x @ V1 + c1).to_event(1))
        numpyro.sample("z2", dist.Bernoulli(logits=z1 @ V2 + c2).to_event(1))


def make_data(n: int = 48, d: int = 10, seed: int = 0) -> jnp.ndarray:
    """Binary data drawn from a random sigmoid belief network of the same shape."""
    rng = np.random.default_rng(seed)
    z2 = rng.random((n, H2)) < 0.5
    U = rng.normal(0, 2.0, (H2, H1))
    z1 = rng.random((n, H1)) < 1 / (1 + np.exp(-(z2 @ U)))
    W = rng.normal(0, 3.0, (H1, d))
    x = rng.random((n, d)) < 1 / (1 + np.exp(-(z1 @ W - 1.0)))
    return jnp.asarray(x, dtype=jnp.float32)


# name -> {site: estimator}: the same estimator on both sites, or a per-site hybrid
CONFIGS = {
    "reinforce": {"z1": Reinforce(), "z2": Reinforce()},
    "reinforce+running": {"z1": Reinforce(RunningAverage(0.9)), "z2": Reinforce(RunningAverage(0.9))},
    "reinforce+learned": {"z1": Reinforce(Learned()), "z2": Reinforce(Learned())},
    "reinforce+learned network": {"z1": Reinforce(Learned(hidden=(16,))), "z2": Reinforce(Learned(hidden=(16,)))},
    "reinforce+loo": {"z1": Reinforce(LeaveOneOut()), "z2": Reinforce(LeaveOneOut())},
    "enumerate": {"z1": Enumerate(), "z2": Enumerate()},
    "mvd": {"z1": MVD(), "z2": MVD()},
    "hybrid (z1 Enumerate, z2 Reinforce+loo)": {"z1": Enumerate(), "z2": Reinforce(LeaveOneOut())},
    "reinforce, per-row signals": {"z1": Reinforce(), "z2": Reinforce()},
    "reinforce+loo, per-row signals": {"z1": Reinforce(LeaveOneOut()), "z2": Reinforce(LeaveOneOut())},
}
ROW_SIGNALS = {name for name in CONFIGS if name.endswith("per-row signals")}  # fitted with ELBO(plate="N")


def objective(name: str, particles: int = 4):
    """The ELBO a configuration fits: per-row learning signals (`plate="N"`) for ROW_SIGNALS."""
    return provi.ELBO(num_particles=particles, plate="N" if name in ROW_SIGNALS else None)


def fit(x, estimators, steps: int, particles: int = 4, seed: int = 0, name: str = ""):
    return provi.fit(
        sbn, x, guide=sbn_guide, estimators=estimators, objective=objective(name, particles),
        optimizer=optax.adam(0.03), steps=steps, seed=seed, progress=False,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (for tests)")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    steps = args.steps or (100 if args.quick else 3000)
    x = make_data(n=8 if args.quick else 48)
    print(f"sigmoid belief network: {x.shape[0]} x {x.shape[1]} binary data, latents z1 ({H1}), z2 ({H2}) per row")
    print(f"{'estimators':42s} {'final ELBO':>11s} {'seconds':>8s}  estimators used")
    out = {}
    for name, ests in CONFIGS.items():
        t = time.perf_counter()
        res = fit(x, ests, steps, name=name)
        w = max(1, len(res.losses) // 10)
        elbo = -float(np.mean(res.losses[-w:]))
        used = {site: est.name for site, est in res.guide.estimators.items()}  # as res.diagnostics() lists them
        out[name] = elbo
        print(f"{name:42s} {elbo:11.3f} {time.perf_counter() - t:8.1f}  {used}")
        assert np.isfinite(elbo), name
    return out


if __name__ == "__main__":
    main()

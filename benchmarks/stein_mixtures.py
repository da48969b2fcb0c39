"""Stein mixtures: provi's `SteinMixture` over `MeanFieldMixture(K)` against NumPyro's `SteinVI`
(an `AutoNormal` guide, K Stein particles), in one process.

    python benchmarks/stein_mixtures.py [--seeds 5] [--json PATH]

Target: the 2-d mixture of four Gaussians of benchmarks/particles.py, case (a) (weights 0.1, 0.2,
0.3, 0.4; centres at (+-1.5, +-1.5), sd 0.6). Both: K = 8 components, Adam(0.05), an RBF kernel
with the median heuristic, one draw per component per step, 3,000 steps. Each starts where its
library starts: provi from its Laplace start, the components spread by 3 of its scales; NumPyro
from `init_to_uniform` (radius 2) per Stein particle. Score: the largest error of a mode's weight,
40,000 (provi) or 5,000 x K (NumPyro) draws assigned to their nearest centre, per seed. Time per
step: each method's step (`provi.setup(...).step`, `SteinVI.update`) in a compiled `lax.scan`,
(long run - short run) / (steps difference), medians of five rounds with the methods alternated.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
import numpyro
import optax

import provi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from particles import CENTRES, WEIGHTS, mixture  # noqa: E402

K = 8
STEPS = 3000
LR = 0.05


def weight_error(x):
    nearest = np.argmin(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1)
    return float(np.max(np.abs(np.bincount(nearest, minlength=4) / len(nearest) - WEIGHTS)))


def run_provi(seed, steps=STEPS):
    return provi.fit(mixture, guide=provi.guides.MeanFieldMixture(K, spread=3.0), objective=provi.SteinMixture(),
                     optimizer=optax.adam(LR), steps=steps, progress=False, seed=seed, early_stop=False, average=False)


def run_numpyro(seed, steps=STEPS):
    from numpyro.contrib.einstein import MixtureGuidePredictive, RBFKernel, SteinVI
    from numpyro.infer.autoguide import AutoNormal

    guide = AutoNormal(mixture)
    svi = SteinVI(mixture, guide, numpyro.optim.Adam(LR), RBFKernel(), num_stein_particles=K, num_elbo_particles=1)
    result = svi.run(jax.random.PRNGKey(seed), steps, progress_bar=False)

    def draws():
        pred = MixtureGuidePredictive(mixture, guide, result.params, guide_sites=svi.guide_sites, num_samples=5000,
                                      return_sites=["x"])
        return np.asarray(pred(jax.random.PRNGKey(seed + 1))["x"]).reshape(-1, 2)

    return result, draws


def provi_loop():
    """`(state, make(n))`: provi's initial state and a compiled loop of n steps (`provi.setup`'s step)."""
    alg = provi.setup(mixture, guide=provi.guides.MeanFieldMixture(K, spread=3.0), objective=provi.SteinMixture(),
                      optimizer=optax.adam(LR))
    state = alg.init(jax.random.PRNGKey(0))

    def make(n):
        keys = jax.random.split(jax.random.PRNGKey(1), n)
        return jax.jit(lambda s: jax.lax.scan(lambda s, k: alg.step(s, k), s, keys)[1])

    return state, make


def numpyro_loop():
    """`(state, make(n))`: SteinVI's initial state and a compiled loop of n of its updates."""
    from numpyro.contrib.einstein import RBFKernel, SteinVI
    from numpyro.infer.autoguide import AutoNormal

    svi = SteinVI(mixture, AutoNormal(mixture), numpyro.optim.Adam(LR), RBFKernel(), num_stein_particles=K,
                  num_elbo_particles=1)
    state = svi.init(jax.random.PRNGKey(0))

    def make(n):
        return jax.jit(lambda s: jax.lax.scan(lambda s, _: svi.update(s), s, None, length=n)[1])

    return state, make


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    out = {"machine": {"platform": platform.platform(), "jax": jax.__version__, "numpyro": numpyro.__version__},
           "k": K, "steps": STEPS, "provi": {"weight_error": []}, "numpyro": {"weight_error": []}}
    for seed in range(args.seeds):
        out["provi"]["weight_error"].append(weight_error(run_provi(seed).sample(40_000)["x"]))
        out["numpyro"]["weight_error"].append(weight_error(run_numpyro(seed)[1]()))
        print(f"seed {seed}: weight error provi {out['provi']['weight_error'][-1]:.3f} "
              f"numpyro {out['numpyro']['weight_error'][-1]:.3f}", file=sys.stderr)
    loops = {"provi": provi_loop(), "numpyro": numpyro_loop()}
    times = {name: {n: [] for n in (STEPS, STEPS // 5)} for name in loops}
    for name, (state, make) in loops.items():  # compile both lengths first
        loops[name] = (state, {n: make(n) for n in (STEPS, STEPS // 5)})
        for n, fn in loops[name][1].items():
            jax.block_until_ready(fn(state))
    for _ in range(5):  # rounds, the methods alternated
        for name, (state, fns) in loops.items():
            for n, fn in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(fn(state))
                times[name][n].append(time.perf_counter() - t)
    for name in loops:
        long, short = statistics.median(times[name][STEPS]), statistics.median(times[name][STEPS // 5])
        out[name]["us_per_step"] = 1e6 * (long - short) / (STEPS - STEPS // 5)
        out[name]["median_weight_error"] = statistics.median(out[name]["weight_error"])
        print(f"{name}: weight error median {out[name]['median_weight_error']:.3f} "
              f"(range {min(out[name]['weight_error']):.3f}-{max(out[name]['weight_error']):.3f}), "
              f"{out[name]['us_per_step']:.1f} us per step", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Natural gradients inside `provi.fit`: a sparse GP written as a NumPyro model, its inducing values'
Gaussian moved by `provi.optim.natgrad` (Monte Carlo natural gradients from the ELBO's gradient)
and its hyperparameters and inducing inputs by Adam, against Adam on everything.

The model: the regression of benchmarks/gp_natgrad.py (N points in 2-d, an ARD squared-exponential
kernel), its amplitude, two length scales, noise scale and M inducing inputs `numpyro.param`
sites, the whitened inducing values u one latent site (`guide="fullrank"`), minibatches of 256 in a
subsampled plate, provi's default Laplace start. Variants, all with Adam(1e-2) on the params:

- `adam`: Adam(1e-2) on q(u) too, one particle (provi's default objective);
- `adam8`: the same with eight particles;
- `natgrad`: `natgrad(0.5, others=adam(1e-2))`, eight particles;
- `natgrad1`: `natgrad(0.1, others=adam(1e-2))`, one particle;
- `natgrad_price`: `natgrad(0.2, others=adam(1e-2))` with `provi.PriceELBO()` (the precision from
  Hessians at two antithetic draws: exact for this Gaussian likelihood, up to the minibatch).

Every `EVERY` steps (through the step API, `provi.setup`) the full-data bound per point is computed
in closed form (`provi.gp.elbo`) at q(u)'s moments (from 20,000 draws) and the fitted params.
Reported: the bound per point at the end, the steps each variant takes to reach the level `adam`
ends at (the mean of its last four evaluations, a running mean of four against minibatch noise),
and the time per step (provi.fit with `steps` minus with `steps // 5`, both compiled, alternated in
pairs; median and range).

    python benchmarks/gp_natgrad_fit.py --quick --json     # N = 4,000, M = 32, 3,000 steps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provi  # noqa: E402
from provi import gp  # noqa: E402
from gp_natgrad import build, converged_at, data, hyper0  # noqa: E402

BATCH = 256
LR = 1e-2
EVERY = 100
DRAWS = 20_000


def make_model(z0):
    """The SVGP as a NumPyro model, its hyperparameters and inducing inputs (gp_natgrad's `hyper0`
    and `build`) as `numpyro.param` sites."""

    def model(x, y, batch=None):
        svgp, lik = build({k: numpyro.param(k, v) for k, v in hyper0(z0, "regression").items()}, "regression")
        u = svgp.inducing_values("u")
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            f_loc, f_var = svgp.condition(u, x[idx])
            gp.expected_log_likelihood("y", lik, y[idx], f_loc, f_var)

    return model


def variants():
    """{name: (optimizer, objective)}."""
    return {
        "adam": (optax.adam(LR), provi.ELBO()),
        "adam8": (optax.adam(LR), provi.ELBO(num_particles=8)),
        "natgrad": (provi.optim.natgrad(0.5, others=optax.adam(LR)), provi.ELBO(num_particles=8)),
        "natgrad1": (provi.optim.natgrad(0.1, others=optax.adam(LR)), provi.ELBO()),
        "natgrad_price": (provi.optim.natgrad(0.2, others=optax.adam(LR)), provi.PriceELBO()),
    }


def bound_per_point(res, x, y):
    svgp, lik = build(res.model_params(), "regression")
    m, S = gp.moments(res.sample(DRAWS, seed=1)["u"])
    return float(gp.elbo(svgp, m, S, x, y, lik, x.shape[0]) / x.shape[0])


def curve(model, x, y, optimizer, objective, steps, seed=0):
    alg = provi.setup(model, x, y, batch=BATCH, guide="fullrank", optimizer=optimizer, objective=objective, seed=seed)
    state = alg.init(jax.random.PRNGKey(seed))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), steps).reshape(steps // EVERY, EVERY, -1)
    run = jax.jit(lambda s, k: jax.lax.scan(alg.step, s, k)[0])  # EVERY steps in one compiled loop
    res, bounds = provi.FitResult.from_state(alg, state), []  # one result, its parameters replaced: compiled once
    for chunk in keys:
        state = run(state, chunk)
        res.params, res.consts = state.params, state.consts
        bounds.append(bound_per_point(res, x, y))
    return np.asarray(bounds)


def ms_per_step(model, x, y, optimizer, objective, steps, repeats):
    """Per-step milliseconds of provi.fit, (long - short) / (steps - short) for each of `repeats`
    alternated pairs: (median, min, max)."""
    short = steps // 5

    def run(n):
        t0 = time.perf_counter()
        provi.fit(model, x, y, batch=BATCH, guide="fullrank", optimizer=optimizer, objective=objective, steps=n, seed=0,
                  progress=False)
        return time.perf_counter() - t0

    run(short), run(steps)  # compile both (and fill the persistent cache)
    per = [1e3 * (run(steps) - run(short)) / (steps - short) for _ in range(repeats)]
    return float(np.median(per)), float(min(per)), float(max(per))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 4,000, M = 32, 3,000 steps")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="write the JSON (with the curves) here")
    p.add_argument("--x64", action="store_true", help="everything in float64")
    args = p.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    n, m, steps = (4000, 32, 3000) if args.quick else (args.n, args.m, args.steps)
    x, y, _, _ = data(n, "regression")
    x, y = jnp.asarray(x), jnp.asarray(y)
    z0 = np.asarray(x)[np.random.default_rng(1).choice(n, m, replace=False)]
    model = make_model(z0)
    result = dict(n=n, m=m, steps=steps, batch=BATCH, every=EVERY, x64=args.x64, machine=f"{jax.devices()[0].device_kind}, "
                  f"{jax.device_count()} device(s), jax {jax.__version__}")
    t0 = time.perf_counter()
    curves = {}
    for name, (opt, objective) in variants().items():
        curves[name] = curve(model, x, y, opt, objective, steps)
        result[f"{name}_final_bound_per_point"] = float(np.mean(curves[name][-4:]))
        print(f"{name}: final bound per point {result[f'{name}_final_bound_per_point']:.4f}", file=sys.stderr, flush=True)
    level = result["adam_final_bound_per_point"]
    for name in curves:
        result[f"{name}_steps_to_adam_final"] = converged_at(curves[name], level, 0.0, smooth=4, every=EVERY)
    for name, (opt, objective) in variants().items():
        med, lo, hi = ms_per_step(model, x, y, opt, objective, steps, args.repeats)
        result[f"{name}_ms_per_step"], result[f"{name}_ms_per_step_range"] = med, [lo, hi]
        print(f"{name}: {med:.3f} ms/step ({lo:.3f}-{hi:.3f}); steps to adam's final bound "
              f"{result[f'{name}_steps_to_adam_final']}", file=sys.stderr, flush=True)
    result["seconds"] = time.perf_counter() - t0
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "curves": {k: v.tolist() for k, v in curves.items()}}, indent=1))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

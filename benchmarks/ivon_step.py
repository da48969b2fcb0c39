"""Where IVON's time per step goes, against AdamW's (#18): the weight noise, and everything else.

IVON's step is AdamW's plus one Gaussian draw per weight (theta = m + sigma * eps) and a few
elementwise updates. This times, in one process, on the MLPs of benchmarks/bdl.py (scikit-learn's
digits, one jitted epoch of minibatch steps per call; a timing is `--epochs` calls, a quarter of
that for the wide network), alternated in rounds so that the machine's
slow spells hit all of them:

- `adamw`: optax.adamw;
- `ivon`: provi.optim.ivon with its value_and_grad (a fresh draw of every weight each step);
- `ivon_fixed_noise`: the same update, the gradient at theta = m + sigma * eps with one eps drawn
  before training and rescaled each step by a scalar from the step's key: all of IVON but the
  per-weight random numbers;
- `normal_only`: the per-step draw of as many standard normals as the network has weights, alone.

    python benchmarks/ivon_step.py [--rounds 21] [--epochs 40] [--json]

Prints per-step times (median over rounds) and each over AdamW's (median, min, max of the rounds'
ratios); with --json, one JSON object as the last line (also written to results/ivon_step.json).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bdl import MLP, batches, ce, digits  # noqa: E402

from provi.optim import IVONGrads, ivon, ivon_posterior  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"


def fixed_noise_grad(x, y, params0):
    """IVON's gradient and Hessian estimate at theta = m + sigma * eps * c, one eps for the whole run."""
    leaves, tree = jax.tree.flatten(params0)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    eps = jax.tree.unflatten(tree, [jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])
    gf = jax.grad(ce)

    def grad(p, s, idx, k):
        c = 1.0 + 0.01 * jax.random.uniform(k, ())  # one scalar per step: the draw cannot be hoisted out of the loop
        scale = ivon_posterior(p, s).scale
        theta = jax.tree.map(lambda m, sd, e: m + sd * e * c, p, scale, eps)
        g = gf(theta, x[idx], y[idx])
        hess = jax.tree.map(lambda gi, t, m, h: gi * (t - m) * s.ess * (h + s.weight_decay), g, theta, p, s.hess)
        return IVONGrads(g, hess)

    return grad


def epoch_fn(opt, grad, n, bs, extra=None):
    """One jitted epoch of `n // bs` steps; `extra(key)` adds a computation per step (its sum is kept)."""

    @jax.jit
    def epoch(params, state, key):
        kb, ks = jax.random.split(key)

        def step(carry, xs):
            params, state, acc = carry
            idx, k = xs
            if extra is not None:
                return (params, state, acc + extra(k)), None
            updates, state = opt.update(grad(params, state, idx, k), state, params)
            return (optax.apply_updates(params, updates), state, acc), None

        idx = batches(kb, n, bs)
        (params, state, acc), _ = jax.lax.scan(step, (params, state, jnp.zeros(())), (idx, jax.random.split(ks, idx.shape[0])))
        return params, state, acc

    return epoch


def measure(x, y, sizes, bs, rounds, epochs):
    n = x.shape[0]
    net0 = MLP(sizes, jax.random.key(0))
    n_weights = sum(p.size for p in jax.tree.leaves(net0))
    adamw = optax.adamw(1e-3, weight_decay=1e-4)
    opt = ivon(0.1, ess=float(n), hess_init=0.1, weight_decay=1e-4)
    variants = {
        "adamw": (adamw, epoch_fn(adamw, lambda p, s, idx, k: jax.grad(ce)(p, x[idx], y[idx]), n, bs)),
        "ivon": (opt, epoch_fn(opt, lambda p, s, idx, k: opt.value_and_grad(ce)(k, p, s, x[idx], y[idx])[1], n, bs)),
        "ivon_fixed_noise": (opt, epoch_fn(opt, fixed_noise_grad(x, y, net0), n, bs)),
        "normal_only": (opt, epoch_fn(opt, None, n, bs, extra=lambda k: jnp.sum(jax.random.normal(k, (n_weights,))))),
    }
    states = {name: o.init(net0) for name, (o, _) in variants.items()}
    key = jax.random.key(1)
    for name, (_, f) in variants.items():
        jax.block_until_ready(f(net0, states[name], key))  # compile
    times = {name: [] for name in variants}
    for r in range(rounds):
        for name, (_, f) in variants.items():
            t0 = time.perf_counter()
            for e in range(epochs):
                jax.block_until_ready(f(net0, states[name], jax.random.fold_in(key, r * epochs + e)))
            times[name].append((time.perf_counter() - t0) / (epochs * (n // bs)))
    out = {"config": f"MLP {sizes}, batch {bs}, {n_weights} weights, {n // bs} steps per epoch"}
    for name, ts in times.items():
        ratios = [t / a for t, a in zip(ts, times["adamw"])]
        out[name] = {"us_per_step": 1e6 * statistics.median(ts), "over_adamw": statistics.median(ratios),
                     "over_adamw_min": min(ratios), "over_adamw_max": max(ratios)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--epochs", type=int, default=40, help="epochs per timing")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    xtr, ytr, *_ = digits()
    out = {"small": measure(xtr, ytr, (64, 128, 128, 8), 64, args.rounds, args.epochs),
           "wide": measure(xtr, ytr, (64, 512, 512, 8), 256, args.rounds, max(1, args.epochs // 4)),
           "rounds": args.rounds, "epochs_per_timing": args.epochs, "machine": f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}"}
    for size in ("small", "wide"):
        print(out[size]["config"])
        for name in ("adamw", "ivon", "ivon_fixed_noise", "normal_only"):
            m = out[size][name]
            print(f"  {name:17s} {m['us_per_step']:8.1f} us/step   / AdamW {m['over_adamw']:.2f} "
                  f"({m['over_adamw_min']:.2f}-{m['over_adamw_max']:.2f})")
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "ivon_step.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())

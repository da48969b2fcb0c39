"""Sparse variational GPs with natural gradients: steps to converge with `provi.gp.natgrad_step`
(q(u)) plus Adam (hyperparameters and inducing inputs) against Adam on everything, on regression
and on classification; test NLL against GPJax's SVGP and time per step.

Both provi variants optimise the closed-form bound `provi.gp.elbo` (the likelihood integrated
exactly, or by Gauss-Hermite for the classifier) on the same minibatches of 256, with Adam(1e-2) on
the hyperparameters (ARD squared-exponential kernel: amplitude, two length scales; the noise scale
for regression) and on the M inducing inputs, started at the same training points:

- "adam": Adam(1e-2) on q(u)'s mean and Cholesky factor too (what GPJax's SVGP does);
- "natgrad": q(u) by natural-gradient steps of size `--gamma` (0.1), then Adam on the rest.

Every `EVERY` steps the bound per point is evaluated (on the first `EVAL_POINTS` training points
beyond that many). Two measures of convergence:
- q(u) alone, the hyperparameters and inducing inputs held at the natural-gradient fit's final
  values: the step after which the bound per data point stays within `TOL` nats of its exact
  maximum (`optimum`: full-data natural-gradient steps of size 1);
- the whole fit: the step after which the bound (a running mean of four evaluations) stays at or
  above the level Adam ends at (the mean of its last eight evaluations). GPJax runs
its SVGP (whitened, Adam(1e-2) on everything, the same batches size and steps) for the test NLL and
its time per step. Data: regression as in benchmarks/gp.py (y = sin(3 x1) + 0.5 cos(2 x2) x1 + 0.1
noise); classification: the sign of the same function with 10% of labels flipped, a probit
likelihood (GPJax's Bernoulli link), predictive p(y = 1) = Phi(mu / sqrt(1 + s^2)) for both.

    python benchmarks/gp_natgrad.py --quick --json      # N = 4,000, M = 32, 1,500 steps
    python benchmarks/gp_natgrad.py --n 100000 --x64 --json   # N = 100,000, M = 100, 5,000 steps, float64
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import tinygp
from jax.scipy.special import log_ndtr, ndtr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provi import gp  # noqa: E402
from provi.gp import kernels  # noqa: E402
from _timing import steady_state  # noqa: E402

BATCH = 256
LR = 1e-2
EVERY = 25
EVAL_POINTS = 10_000  # the curves' bound per point is estimated on this many training points (all, below)
TOL = 1e-2  # nats per data point (natural gradients of size 0.1 on batches of 256 hover about 0.003 from the optimum)


def data(n, kind, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n + 2000, 2))
    f = np.sin(3 * x[:, 0]) + 0.5 * np.cos(2 * x[:, 1]) * x[:, 0]
    if kind == "regression":
        y = f + 0.1 * rng.normal(size=f.shape)
    else:
        y = np.where(rng.uniform(size=f.shape) < 0.1, f <= 0, f > 0).astype(np.float64)
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    x, y = x.astype(dtype), y.astype(dtype)
    return x[:n], y[:n], x[n:], y[n:]


def probit(f):
    """Bernoulli with p = Phi(f), as logits log Phi(f) - log Phi(-f) (stable in the tails)."""
    return dist.Bernoulli(logits=log_ndtr(f) - log_ndtr(-f))


def build(h, kind):
    kernel = jnp.exp(2 * h["log_amp"]) * tinygp.transforms.Linear(jnp.exp(-h["log_scale"]), kernels.ExpSquared())
    lik = gp.Gaussian(jnp.exp(h["log_noise"])) if kind == "regression" else probit
    return gp.SVGP(kernel, h["z"]), lik


def hyper0(z0, kind):
    h = {"log_amp": jnp.zeros(()), "log_scale": jnp.zeros(2), "z": jnp.asarray(z0)}
    return h | ({"log_noise": jnp.log(0.3)} if kind == "regression" else {})


def chol(raw):
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))


def make_runs(x, y, z0, kind, gamma, seed=0, fixed=None):
    """`(run(variant, steps) -> (state, bounds per point every EVERY steps), moments, build)` for
    the two variants on the same minibatches (drawn from `seed`); `fixed`: hyperparameters held
    at these values (q(u) alone is fitted)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    n, m = x.shape[0], z0.shape[0]
    opt = optax.adam(LR)

    held = jnp.arange(min(n, EVAL_POINTS))  # the bound per point on (at most) EVAL_POINTS training points

    def full_bound(h, mean, cov):
        svgp, lik = build(h, kind)
        return gp.elbo(svgp, mean, cov, x[held], y[held], lik, n) / n

    def batch_bound(h, mean, cov, idx):
        svgp, lik = build(h, kind)
        return gp.elbo(svgp, mean, cov, x[idx], y[idx], lik, n)

    def adam_step(state, idx):
        p, s = state
        g = jax.grad(lambda p: -batch_bound(p["h"], p["m"], chol(p["L"]) @ chol(p["L"]).T, idx))(p)
        if fixed is not None:
            g["h"] = jax.tree.map(jnp.zeros_like, g["h"])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s)

    def natgrad_step(state, idx):
        (h, mean, cov), s = state
        svgp, lik = build(h, kind)
        mean, cov = gp.natgrad_step(svgp, mean, cov, x[idx], y[idx], lik, n, gamma)
        if fixed is not None:
            return ((h, mean, cov), s)
        g = jax.grad(lambda h: -batch_bound(h, mean, cov, idx))(h)
        u, s = opt.update(g, s, h)
        return ((optax.apply_updates(h, u), mean, cov), s)

    def moments(variant, state):
        if variant == "adam":
            p = state[0]
            return p["h"], p["m"], chol(p["L"]) @ chol(p["L"]).T
        return state[0]

    def init(variant):
        h = hyper0(z0, kind) if fixed is None else fixed
        if variant == "adam":
            p = {"h": h, "m": jnp.zeros(m), "L": jnp.zeros((m, m))}
            return (p, opt.init(p))
        return ((h, jnp.zeros(m), jnp.eye(m)), opt.init(h))

    @functools.partial(jax.jit, static_argnums=(0, 1, 2))
    def run(variant, steps, curve, key):
        step = adam_step if variant == "adam" else natgrad_step
        batches = jax.random.randint(key, (steps // EVERY, EVERY, BATCH), 0, n)

        def chunk(state, idx):
            state = jax.lax.fori_loop(0, EVERY, lambda i, st: step(st, idx[i]), state)
            return state, (full_bound(*moments(variant, state)) if curve else jnp.zeros(()))

        return jax.lax.scan(chunk, init(variant), batches)

    def call(variant, steps, curve=True):
        """The fit's final state and its bound per point every EVERY steps (`curve`; else only the
        steps, for timing)."""
        return run(variant, steps, curve, jax.random.PRNGKey(seed))

    return call, moments, build


def test_metrics(h, mean, cov, kind, xt, yt):
    svgp, lik = build(h, kind)
    mu, var = gp.predict(svgp, jnp.asarray(xt), mean, cov)
    yt = jnp.asarray(yt)
    if kind == "regression":
        v = var + jnp.exp(2 * h["log_noise"])
        nll = jnp.mean(0.5 * (jnp.log(2 * jnp.pi * v) + (yt - mu) ** 2 / v))
        return dict(test_nll=float(nll), test_rmse=float(jnp.sqrt(jnp.mean((yt - mu) ** 2))))
    p = jnp.clip(ndtr(mu / jnp.sqrt(1 + var)), 1e-12, 1 - 1e-12)
    nll = -jnp.mean(yt * jnp.log(p) + (1 - yt) * jnp.log1p(-p))
    return dict(test_nll=float(nll), test_accuracy=float(jnp.mean((p > 0.5) == (yt > 0.5))))


def run_gpjax(x, y, xt, yt, z0, kind, steps, repeats):
    try:
        import gpjax as gpx
    except ImportError:
        return dict(gpjax_note="gpjax is not installed")
    train = gpx.Dataset(X=jnp.asarray(x), y=jnp.asarray(y)[:, None])
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=gpx.kernels.RBF(lengthscale=jnp.ones(2)))
    lik = gpx.likelihoods.Gaussian(obs_stddev=0.3) if kind == "regression" else gpx.likelihoods.Bernoulli()
    q = gpx.variational_families.WhitenedVariationalGaussian(model=prior * lik, inducing_inputs=jnp.asarray(z0))

    def fit(n):
        return gpx.fit(model=q, objective=lambda m, d: -gpx.objectives.elbo(m, d), train_data=train,
                       optim=optax.adam(LR), num_iters=n, batch_size=BATCH, key=jax.random.PRNGKey(0), verbose=False)

    n_long, n_short = steps, steps // 5
    fit(n_short), fit(n_long)
    timing = steady_state(lambda n: fit(n)[1], n_long, n_short, repeats)
    trained, _ = fit(steps)
    pred = trained.predict(jnp.asarray(xt))
    mu, var = pred.mean, pred.variance
    yt = jnp.asarray(yt)
    if kind == "regression":
        noise = jnp.asarray(gpx.parameters.val(trained.model.likelihood.obs_stddev))
        v = var + noise**2
        out = dict(test_nll=float(jnp.mean(0.5 * (jnp.log(2 * jnp.pi * v) + (yt - mu) ** 2 / v))),
                   test_rmse=float(jnp.sqrt(jnp.mean((yt - mu) ** 2))))
    else:
        p = jnp.clip(ndtr(mu / jnp.sqrt(1 + var)), 1e-12, 1 - 1e-12)
        out = dict(test_nll=float(-jnp.mean(yt * jnp.log(p) + (1 - yt) * jnp.log1p(-p))),
                   test_accuracy=float(jnp.mean((p > 0.5) == (yt > 0.5))))
    return {f"gpjax_{k}": v for k, v in out.items()} | dict(gpjax_ms_per_step=1e3 * timing["step_s"])


def converged_at(bounds, best, tol=TOL, smooth=1, every=EVERY):
    """The first step after which the bound (per point, every `every` steps; a running mean over
    `smooth` evaluations against minibatch noise) stays within `tol` of `best`; None if never."""
    c = np.convolve(np.asarray(bounds), np.ones(smooth) / smooth, "valid")
    bad = np.nonzero(c < best - tol)[0]
    first = 0 if bad.size == 0 else bad[-1] + 1
    return None if first >= c.size else int((first + smooth) * every)


def optimum(x, y, h, kind, m):
    """q(u)'s optimum at hyperparameters `h` and its bound per point, in float64 (learned inducing
    inputs can make K_zz too ill-conditioned for float32 at N = 100,000): full-data
    natural-gradient steps, one of size 1 for a Gaussian likelihood (exact), for the classifier 20
    damped ones (0.5) and 30 of size 1 (its fixed point)."""
    with jax.enable_x64(True):
        h = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), h)
        svgp, lik = build(h, kind)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        step = jax.jit(lambda q, g: gp.natgrad_step(svgp, *q, x, y, lik, x.shape[0], g))
        q = (jnp.zeros(m), jnp.eye(m))
        for t in range(1 if kind == "regression" else 50):
            q = step(q, 1.0 if kind == "regression" or t >= 20 else 0.5)
        return q, float(gp.elbo(svgp, *q, x, y, lik, x.shape[0]) / x.shape[0])


def one_task(kind, n, m, steps, gamma, repeats):
    x, y, xt, yt = data(n, kind)
    z0 = x[np.random.default_rng(1).choice(n, m, replace=False)]
    run, moments, _ = make_runs(x, y, z0, kind, gamma)
    out, curves = {}, {}
    for variant in ("adam", "natgrad"):  # the whole fit: q(u), hyperparameters, inducing inputs
        t0 = time.perf_counter()
        state, bounds = jax.block_until_ready(run(variant, steps))
        out[f"{variant}_train_s"] = time.perf_counter() - t0  # compilation and the curve's evaluations included
        curves[variant] = np.asarray(bounds, np.float64)
        out.update({f"{variant}_{k}": v for k, v in test_metrics(*moments(variant, state), kind, xt, yt).items()})
        out[f"{variant}_final_bound_per_point"] = float(curves[variant][-1])
        if variant == "natgrad":
            hyper = moments(variant, state)[0]
    # the whole fit: steps each variant takes to reach the level Adam reaches at the end
    level = float(np.mean(curves["adam"][-8:]))
    for variant in ("adam", "natgrad"):
        out[f"{variant}_steps_to_adam_final"] = converged_at(curves[variant], level, 0.0, smooth=4)
    # q(u) alone at the natgrad fit's hyperparameters: steps to within TOL of the exact optimum
    _, best = optimum(x, y, hyper, kind, m)
    fixed_run, _, _ = make_runs(x, y, z0, kind, gamma, fixed=hyper)
    for variant in ("adam", "natgrad"):
        _, bounds = fixed_run(variant, steps)
        curves[f"{variant}_q_only"] = np.asarray(bounds, np.float64)
        out[f"{variant}_q_only_steps_to_converge"] = converged_at(bounds, best)
        out[f"{variant}_q_only_final_gap"] = best - float(np.mean(np.asarray(bounds)[-4:]))
    adam_level = float(np.mean(curves["adam_q_only"][-4:]))  # where Adam's q(u) ends, and when natgrad gets there
    out["natgrad_q_only_steps_to_adam_final"] = converged_at(curves["natgrad_q_only"], adam_level, 0.0)
    a, g = out["adam_q_only_steps_to_converge"], out["natgrad_q_only_steps_to_converge"]
    out["q_only_steps_ratio"] = None if g is None else (f">{steps / g:.0f}" if a is None else a / g)
    out["q_only_optimum_per_point"] = best
    # time per step of each variant (long minus short runs)
    short = max(EVERY, (steps // 5) // EVERY * EVERY)
    for variant in ("adam", "natgrad"):
        run(variant, short, False), run(variant, steps, False)  # compile
        out[f"{variant}_ms_per_step"] = 1e3 * steady_state(lambda k: run(variant, k, False)[1], steps, short, repeats)["step_s"]
    out.update(run_gpjax(x, y, xt, yt, z0, kind, steps, repeats))
    out["curves"] = {k: v.tolist() for k, v in curves.items()}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 4,000, M = 32, 1,500 steps")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--tasks", default="regression,classification")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="write the full JSON (with the bound curves) here")
    p.add_argument("--x64", action="store_true", help="everything (GPJax too) in float64: natural-gradient steps at "
                   "N = 100,000 lose positive definiteness in float32")
    p.add_argument("--repeats", type=int, default=3, help="long/short timing pairs")
    args = p.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    n, m, steps = (4000, 32, 1500) if args.quick else (args.n, 100, 5000)
    repeats = args.repeats
    result = dict(n=n, m=m, steps=steps, batch=BATCH, gamma=args.gamma, every=EVERY, tol=TOL, x64=args.x64,
                  machine=f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}")
    t0 = time.perf_counter()
    for kind in args.tasks.split(","):
        result[kind] = one_task(kind, n, m, steps, args.gamma, repeats)
        r = result[kind]
        if args.out:  # after each task, so that a failure later keeps what ran
            Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"{kind}: q(u) alone, steps to converge adam {r['adam_q_only_steps_to_converge']} natgrad "
              f"{r['natgrad_q_only_steps_to_converge']}; whole fit, steps to Adam's final bound adam "
              f"{r['adam_steps_to_adam_final']} natgrad {r['natgrad_steps_to_adam_final']}; test NLL adam {r['adam_test_nll']:.4f} natgrad {r['natgrad_test_nll']:.4f} "
              f"gpjax {r.get('gpjax_test_nll')}; ms/step adam {r['adam_ms_per_step']:.3f} natgrad "
              f"{r['natgrad_ms_per_step']:.3f} gpjax {r.get('gpjax_ms_per_step')}", file=sys.stderr)
    result["seconds"] = time.perf_counter() - t0
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "curves"} if isinstance(v, dict) else v)
                          for k, v in result.items()}))


if __name__ == "__main__":
    sys.exit(main())

"""Per-step overhead of VI tools against hand-written JAX, in one process.

    python benchmarks/overhead.py [--quick] [--json PATH]

Two cases, each fitted with a mean-field Gaussian (1-particle reparameterised
ELBO, Adam(1e-2)) by every competitor:

  eight_schools  non-centred eight schools, 20,000 steps
  logreg         Bayesian logistic regression, N=100,000, D=20, 2,000 steps

For every competitor two figures:
  step_s  steady-state seconds per step, (long run - short run) / (long - short),
          both lengths already compiled where the tool allows it;
  wall_s  a fresh, default fit of the case's step count, compile included
          (median of fresh calls in this process, so one-off import costs are
          left out).  provi's, for eight schools: `provi.fit(model, *args,
          guide="meanfield", progress=True)` (case (a)'s family, every other
          setting default) in new processes with an empty compilation cache,
          imports excluded; also the all-default call (guide="auto") and the
          first one with the persistent compilation cache filled.
Ratios are against hand-written JAX (eight_schools) and against the bare
likelihood-gradient floor (logreg).  Results go to JSON and a printed table.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import lax, random
from jax.scipy.stats import norm
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal, AutoNormal

from _timing import median_timed, paired_ratio, steady_state, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # an installed provi takes precedence over the tree

try:
    import provi

    provi.fit, provi.ELBO  # noqa: B018  (the package skeleton has no API yet)
except (ImportError, AttributeError):
    provi = None

try:
    import pyro
    import pyro.distributions as pdist
    import torch
    from pyro.infer.autoguide import AutoNormal as PyroAutoNormal

    # One intra-op thread: with two, torch's spinning worker threads made Pyro
    # about 10x slower per step on a busy 2-core machine.
    torch.set_num_threads(1)
except ImportError:
    pyro = None

LR = 1e-2
LOG_2PI = math.log(2 * math.pi)

# repeats: steady-state measurements; wall_repeats: fresh, compile-included fits.
FULL = dict(
    repeats=5,
    wall_repeats=3,
    eight_schools=dict(steps=20_000, short=2_000, pb=(2_000, 200), pyro=(1_000, 200), pairs=15),
    logreg=dict(N=100_000, D=20, steps=2_000, short=500, pyro=(500, 100)),
)
QUICK = dict(
    repeats=3,
    wall_repeats=1,
    eight_schools=dict(steps=20_000, short=2_000, pb=(300, 100), pyro=(60, 20), pairs=2),
    logreg=dict(N=2_000, D=20, steps=1_000, short=100, pyro=(60, 20)),
)
DEFINITIONS = dict(
    step_s="steady-state seconds per step: (t_long - t_short) / (n_long - n_short), medians over repeats",
    step_cpu_s="the same in process CPU time (all threads); robust to other load on the machine",
    intercept_s="fixed seconds per call: t_short - n_short * step_s",
    wall_s="fresh default fit of `steps` steps, compile included (median over wall_repeats)",
    paired_provi_over_hand="provi's step over the hand-written step, the two alternated in pairs "
    "(each from the fastest of two long and two short runs): median, min and max over the pairs kept "
    "(a pair in which a long run was not slower than its short one measured noise and is dropped)",
    ratio="step_s / step_s of the case's baseline (ratio_cpu: the same in CPU time)",
    loss_tail="mean loss over the last tenth of a fit: all entries optimise the same ELBO",
)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def eight_schools_data():
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18], np.float32)
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12], np.float32)
    return sigma, y


def logreg_data(N, D, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=D)
    y = rng.uniform(size=N) < 1 / (1 + np.exp(-(X @ w)))
    return X, y.astype(np.float32)


# ---------------------------------------------------------------------------
# The models: NumPyro and Pyro, line for line the same
# ---------------------------------------------------------------------------

def numpyro_eight_schools(sigma, y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        numpyro.sample("obs", dist.Normal(mu + tau * theta_trans, sigma), obs=y)


def pyro_eight_schools(sigma, y):
    mu = pyro.sample("mu", pdist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", pdist.HalfCauchy(5.0))
    with pyro.plate("J", sigma.shape[0]):
        theta_trans = pyro.sample("theta_trans", pdist.Normal(0.0, 1.0))
        pyro.sample("obs", pdist.Normal(mu + tau * theta_trans, sigma), obs=y)


def numpyro_logreg(X, y):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)


def pyro_logreg(X, y):
    w = pyro.sample("w", pdist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with pyro.plate("N", X.shape[0]):
        pyro.sample("y", pdist.Bernoulli(logits=X @ w), obs=y)


# ---------------------------------------------------------------------------
# Hand-written JAX: the same negative ELBO, mean field in unconstrained space.
# params = (loc, log_scale); the Gaussian entropy is taken in closed form.
# ---------------------------------------------------------------------------

def gaussian_entropy(log_scale):
    return log_scale.sum() + 0.5 * log_scale.size * (1 + LOG_2PI)


def hand_eight_schools_loss(params, key, sigma, y):
    loc, log_scale = params
    z = loc + jnp.exp(log_scale) * random.normal(key, loc.shape)
    mu, u, theta_trans = z[0], z[1], z[2:]
    tau = jnp.exp(u)  # HalfCauchy(5) density at tau, times the Jacobian e^u
    log_tau = math.log(2 / (5 * math.pi)) - jnp.log1p((tau / 5) ** 2) + u
    log_joint = (
        norm.logpdf(mu, 0.0, 5.0)
        + log_tau
        + norm.logpdf(theta_trans).sum()
        + norm.logpdf(y, mu + tau * theta_trans, sigma).sum()
    )
    return -(log_joint + gaussian_entropy(log_scale))


def hand_logreg_loss(params, key, X, s):
    # s = 2y - 1, so log Bernoulli(y | logits l) = log_sigmoid(s * l):
    # one mat-vec forward, one (X^T) backward.
    loc, log_scale = params
    w = loc + jnp.exp(log_scale) * random.normal(key, loc.shape)
    log_joint = jax.nn.log_sigmoid(s * (X @ w)).sum() + norm.logpdf(w).sum()
    return -(log_joint + gaussian_entropy(log_scale))


def hand_fit(loss_fn, optimizer=None, presplit=True):
    """A fresh jitted ``fit(params, key, *data, steps) -> losses``: one lax.scan.

    ``presplit`` (the baseline): every step's key is split from ``key`` in one call before the
    loop and the scan reads one per step, the fastest hand-written form on CPU (a
    ``random.split`` inside the step costs more than the whole ELBO step of eight schools).
    ``presplit=False``: the key is split inside each step, as most hand-written loops do."""
    optimizer = optimizer or optax.adam(LR)

    def fit(params, key, *data, steps):
        def step(carry, sub):
            params, opt_state, key = carry
            if sub is None:
                key, sub = random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(params, sub, *data)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), loss

        carry = (params, optimizer.init(params), key)
        if presplit:
            return lax.scan(step, carry, random.split(key, steps))[1]
        return lax.scan(step, carry, length=steps)[1]

    return jax.jit(fit, static_argnames="steps")


def floor_fit():
    """The bare floor: gradient descent on the logistic likelihood alone."""

    def fit(w, X, s, *, steps):
        lr = LR / X.shape[0]  # keeps w finite; the cost does not depend on it
        nll_grad = jax.grad(lambda w: -jax.nn.log_sigmoid(s * (X @ w)).sum())
        return lax.scan(lambda w, _: (w - lr * nll_grad(w), None), w, length=steps)[0]

    return jax.jit(fit, static_argnames="steps")


def floor_pretransposed_fit():
    """For reference only: the same gradient by hand, X^T v read from a stored X^T.

    XLA on CPU computes v @ X (what autodiff emits for the backward mat-vec)
    several times slower than XT @ v; every autodiff-based entry pays that.
    """

    def fit(w, X, XT, s, *, steps):
        lr = LR / X.shape[0]
        nll_grad = lambda w: -XT @ (s * jax.nn.sigmoid(-s * (X @ w)))
        return lax.scan(lambda w, _: (w - lr * nll_grad(w), None), w, length=steps)[0]

    return jax.jit(fit, static_argnames="steps")


def compiled_runner(jitted, args, lengths):
    """``run(n)`` executing an ahead-of-time compiled, warmed-up ``jitted(*args, steps=n)``."""
    exe = {n: jitted.lower(*args, steps=n).compile() for n in lengths}
    for n in lengths:
        jax.block_until_ready(exe[n](*args))
    return lambda n: exe[n](*args)


def tail_mean(losses):
    """Mean of the last tenth of the losses: a check that all fit the same thing."""
    losses = np.asarray(losses, dtype=np.float64)
    return float(losses[-max(1, len(losses) // 10):].mean())


# ---------------------------------------------------------------------------
# Competitors.  Each returns a dict with at least step_s and wall_s.
# ---------------------------------------------------------------------------

def bench_hand(case, presplit=True):
    data, init, key = case.jax_data, case.hand_init, random.key(0)
    fresh = lambda: hand_fit(case.hand_loss, presplit=presplit)(init, key, *data, steps=case.steps)
    wall, losses = median_timed(fresh, case.wall_repeats)
    run = compiled_runner(hand_fit(case.hand_loss, presplit=presplit), (init, key, *data), (case.steps, case.short))
    case.runs["handwritten_jax" if presplit else "handwritten_jax_split_in_step"] = run
    return dict(steady_state(run, case.steps, case.short, case.repeats), wall_s=wall,
                loss_tail=tail_mean(losses))


def bench_floor(case):
    X, s = case.jax_data
    w0 = jnp.zeros(X.shape[1], X.dtype)
    wall, _ = median_timed(lambda: floor_fit()(w0, X, s, steps=case.steps), case.wall_repeats)
    run = compiled_runner(floor_fit(), (w0, X, s), (case.steps, case.short))
    return dict(steady_state(run, case.steps, case.short, case.repeats), wall_s=wall)


def bench_floor_pretransposed(case):
    X, s = case.jax_data
    args = (jnp.zeros(X.shape[1], X.dtype), X, X.T.copy(), s)
    wall, _ = median_timed(lambda: floor_pretransposed_fit()(*args, steps=case.steps), case.wall_repeats)
    run = compiled_runner(floor_pretransposed_fit(), args, (case.steps, case.short))
    return dict(steady_state(run, case.steps, case.short, case.repeats), wall_s=wall,
                note="reference, not a competitor: hand gradient with a stored X^T")


def bench_numpyro(case, guide_cls):
    model, data, key = case.numpyro_model, case.numpyro_data, random.PRNGKey(0)
    new_svi = lambda: SVI(model, guide_cls(model), numpyro.optim.Adam(LR), Trace_ELBO())
    fit = lambda n, bar=False: new_svi().run(key, n, *data, progress_bar=bar).losses

    # (i) svi.run as a user calls it: it retraces and recompiles on every call.
    run_walls, losses = {}, {}
    for n in (case.steps, case.short):
        run_walls[n], losses[n] = median_timed(lambda: fit(n), case.wall_repeats)
    out = dict(wall_s=run_walls[case.steps], loss_tail=tail_mean(losses[case.steps]),
               run_wall_s={str(n): t for n, t in run_walls.items()})

    # (ii) steady state: svi.update inside our own jitted lax.scan.
    svi = new_svi()
    state = svi.init(key, *data)

    def scan_fit(state, *data, steps):
        return lax.scan(lambda st, _: svi.update(st, *data), state, length=steps)[1]

    scan_fit = jax.jit(scan_fit, static_argnames="steps")
    run = compiled_runner(scan_fit, (state, *data), (case.steps, case.short))
    out.update(steady_state(run, case.steps, case.short, case.repeats))

    # (iii) svi.run(progress_bar=True): a Python loop over a jitted step.
    #       Every call recompiles, so compile time cancels only on average.
    if case.pb:
        long, short = case.pb
        pb = steady_state(lambda n: fit(n, bar=True), long, short, case.wall_repeats)
        out["progress_bar"] = dict(
            pb, wall_s_extrapolated=pb["t_short_s"] + (case.steps - short) * pb["step_s"],
            note=f"svi.run(progress_bar=True) timed on {long} and {short} steps only; "
            f"wall for {case.steps} steps extrapolated linearly from them",
        )
    return out


def bench_pyro(case):
    if pyro is None:
        return {"skipped": "pyro not installed"}
    model, data = case.pyro_model, case.pyro_data
    long, short = case.pyro

    def new_svi():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        return pyro.infer.SVI(model, PyroAutoNormal(model), pyro.optim.Adam({"lr": LR}),
                              pyro.infer.Trace_ELBO())

    def steps(svi, n):
        return [svi.step(*data) for _ in range(n)]

    fresh, _ = median_timed(lambda: steps(new_svi(), short), case.wall_repeats)
    svi, losses = new_svi(), {}
    steps(svi, 10)  # set-up and warm-up

    def run(n):
        losses[n] = steps(svi, n)

    out = steady_state(run, long, short, case.repeats)
    out.update(
        wall_s=fresh + (case.steps - short) * out["step_s"],
        wall_note=f"extrapolated: a fresh {short}-step fit ({fresh:.3f} s) "
        f"plus {case.steps - short} steady-state steps",
        loss_tail=tail_mean(losses[long]),
    )
    return out


_FRESH_FIT = """
import json, os, sys, time
sys.path[:0] = [{bench!r}, {repo!r}]
import overhead, provi
args = overhead.eight_schools_data()
t0 = time.perf_counter()
res = provi.fit(overhead.numpyro_eight_schools, *args, progress=True, **{kwargs!r})
wall = time.perf_counter() - t0
print(json.dumps(dict(wall_s=wall, steps=len(res.losses))))
"""


def fresh_process_fit(kwargs, cache_dir=None, repeats=3):
    """Median wall seconds of `provi.fit(eight schools, progress=True, **kwargs)` in new processes
    (imports excluded, compilation included), each with an empty persistent compilation cache
    unless `cache_dir` is given; and the steps the fit ran."""
    walls, steps = [], None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as empty:
            env = dict(os.environ, PROVI_CACHE_DIR=cache_dir or empty)
            code = _FRESH_FIT.format(bench=str(REPO / "benchmarks"), repo=str(REPO), kwargs=kwargs)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
        walls.append(row["wall_s"])
        steps = row["steps"]
    return statistics.median(walls), steps


def bench_provi(case):
    """provi.fit on the unmodified NumPyro model.

    The objective and optimizer objects are built once and reused by every
    call; provi caches its compiled loop per model, so after the first call
    ``intercept_s`` (the per-call cost) should be small.  A recompile per
    call shows up there, not in ``step_s``.
    """
    if provi is None:
        return {"skipped": "provi not importable"}
    model, data = case.numpyro_model, case.numpyro_data
    config = dict(guide="meanfield", objective=provi.ELBO(num_particles=1),
                  optimizer=optax.adam(LR), seed=0, progress=False, early_stop=False)
    fit = lambda n: provi.fit(model, *data, steps=n, **config)

    if case.name == "eight_schools":
        # Case (a)'s default fit: its family, every other setting default, progress bar on, in a
        # new process with an empty compilation cache; and the all-default call (guide="auto"),
        # and the first one again once the persistent cache holds its programs.
        out = {}
        out["wall_s"], out["wall_losses_len"] = fresh_process_fit(dict(guide="meanfield"), repeats=case.wall_repeats)
        out["wall_call"] = 'provi.fit(model, *args, guide="meanfield", progress=True), new process, empty cache'
        out["wall_auto_s"], out["wall_auto_losses_len"] = fresh_process_fit({}, repeats=case.wall_repeats)
        with tempfile.TemporaryDirectory() as warm:
            fresh_process_fit(dict(guide="meanfield"), cache_dir=warm, repeats=1)
            out["wall_warm_cache_s"], _ = fresh_process_fit(dict(guide="meanfield"), cache_dir=warm, repeats=case.wall_repeats)
        res = fit(case.steps)
    else:
        call = f"provi.fit(model, *args, steps={case.steps}, **config)"
        wall, res = timed(lambda: fit(case.steps))
        out = dict(wall_s=wall, wall_call=call, wall_losses_len=len(res.losses))
    out["loss_tail"] = tail_mean(res.losses)

    # Steady state from fit calls of two lengths, after warming both up.
    losses_len = {}

    def run(n):
        res = fit(n)
        losses_len[str(n)] = len(res.losses)
        return res.losses

    run(case.steps), run(case.short)
    case.runs["provi"] = run
    out.update(steady_state(run, case.steps, case.short, case.repeats), losses_len=losses_len)
    return out


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def make_cases(cfg):
    repeats = dict(repeats=cfg["repeats"], wall_repeats=cfg["wall_repeats"])
    sigma, y = eight_schools_data()
    es = cfg["eight_schools"]
    yield SimpleNamespace(
        **repeats, name="eight_schools", baseline="handwritten_jax", floor=False,
        steps=es["steps"], short=es["short"], pb=es["pb"], pyro=es["pyro"], pairs=es["pairs"], runs={},
        numpyro_model=numpyro_eight_schools, numpyro_data=(jnp.asarray(sigma), jnp.asarray(y)),
        pyro_model=pyro_eight_schools,
        pyro_data=(torch.from_numpy(sigma), torch.from_numpy(y)) if pyro else None,
        hand_loss=hand_eight_schools_loss, jax_data=(jnp.asarray(sigma), jnp.asarray(y)),
        hand_init=(jnp.zeros(2 + len(y)), jnp.full(2 + len(y), math.log(0.1))),
    )
    lr = cfg["logreg"]
    X, y = logreg_data(lr["N"], lr["D"])
    yield SimpleNamespace(
        **repeats, name="logreg", baseline="bare_floor", floor=True, N=lr["N"], D=lr["D"],
        steps=lr["steps"], short=lr["short"], pb=None, pyro=lr["pyro"], pairs=0, runs={},
        numpyro_model=numpyro_logreg, numpyro_data=(jnp.asarray(X), jnp.asarray(y)),
        pyro_model=pyro_logreg,
        pyro_data=(torch.from_numpy(X), torch.from_numpy(y)) if pyro else None,
        hand_loss=hand_logreg_loss, jax_data=(jnp.asarray(X), jnp.asarray(2 * y - 1)),
        hand_init=(jnp.zeros(lr["D"]), jnp.full(lr["D"], math.log(0.1))),
    )


def machine():
    info = dict(
        platform=platform.platform(), processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(), cpus_usable=len(os.sched_getaffinity(0)),
        python=platform.python_version(), jax=jax.__version__, numpyro=numpyro.__version__,
        optax=optax.__version__, jax_backend=jax.default_backend(),
        jax_devices=[str(d) for d in jax.devices()],
        loadavg_start=os.getloadavg(),  # other work on the machine adds noise
    )
    if pyro is not None:
        info.update(pyro=pyro.__version__, torch=torch.__version__,
                    torch_threads=torch.get_num_threads())
    if provi is not None:
        info["provi"] = getattr(provi, "__version__", "unknown")
    return info


def ratios(entry, entries, baseline):
    """step (wall and CPU) over that of hand-written JAX, of the floor, of the baseline."""
    out = {}
    for ref in ("handwritten_jax", "bare_floor"):
        for kind in ("", "_cpu"):
            if f"step{kind}_s" in entry and ref in entries:
                out[f"ratio{kind}_to_{ref}"] = entry[f"step{kind}_s"] / entries[ref][f"step{kind}_s"]
                if ref == baseline:
                    out[f"ratio{kind}"] = out[f"ratio{kind}_to_{ref}"]
    return out


def run_case(case):
    competitors = {
        "handwritten_jax": lambda: bench_hand(case),
        "handwritten_jax_split_in_step": lambda: bench_hand(case, presplit=False),
        "bare_floor": (lambda: bench_floor(case)) if case.floor else None,
        "floor_pretransposed": (lambda: bench_floor_pretransposed(case)) if case.floor else None,
        "numpyro_AutoNormal": lambda: bench_numpyro(case, AutoNormal),
        "numpyro_AutoDiagonalNormal": lambda: bench_numpyro(case, AutoDiagonalNormal),
        "pyro_AutoNormal": lambda: bench_pyro(case),
        "provi": lambda: bench_provi(case),
    }
    entries = {}
    for name, bench in competitors.items():
        if bench is None:
            continue
        print(f"  {case.name}: {name} ...", end=" ", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            entries[name] = bench()
        except Exception as e:  # a broken competitor must not hide the others
            if name != "provi":
                raise
            traceback.print_exc()
            entries[name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    for entry in entries.values():
        entry.update(ratios(entry, entries, case.baseline))
    info = {k: getattr(case, k) for k in ("steps", "short", "baseline") + (("N", "D") if case.floor else ())}
    if case.pairs and {"handwritten_jax", "provi"} <= set(case.runs):
        # the steadier figure for the 1.2x target: hand-written and provi alternated in pairs
        print(f"  {case.name}: provi / hand-written in {case.pairs} alternating pairs ...", file=sys.stderr, flush=True)
        info["paired_provi_over_hand"] = paired_ratio(case.runs["handwritten_jax"], case.runs["provi"],
                                                      case.steps, case.short, case.pairs)
    return dict(info, competitors=entries)


def table(results):
    cols = f"{'step [us]':>10} {'cpu [us]':>10} {'x base':>8} {'x base cpu':>10} {'wall [s]':>9} {'call [s]':>9}"
    head = f"{'case':<14} {'competitor':<28} {cols}  note"
    lines = [head, "-" * len(head)]
    num = lambda v, width, prec, scale=1: f"{v * scale:>{width}.{prec}f}" if v is not None else "-".rjust(width)
    for cname, case in results["cases"].items():
        lines.append(f"{cname} (baseline: {case['baseline']})")
        entries = case["competitors"]
        for name, e in entries.items():
            rows = [(name, e)]
            if "progress_bar" in e:
                pb = dict(e["progress_bar"], wall_s=e["progress_bar"]["wall_s_extrapolated"])
                rows.append(("  svi.run(progress_bar=True)", dict(pb, **ratios(pb, entries, case["baseline"]))))
            for label, r in rows:
                if "step_s" not in r:
                    lines.append(f"{'':<14} {label:<28} {r.get('skipped') or r.get('error')}")
                    continue
                if "run_wall_s" in r:
                    note = "wall: svi.run " + ", ".join(f"{n}: {t:.2f} s" for n, t in r["run_wall_s"].items())
                elif "wall_auto_s" in r:
                    note = (f"wall: new process, guide='meanfield' ({r['wall_losses_len']} steps); guide='auto' "
                            f"{r['wall_auto_s']:.2f} s; warm cache {r['wall_warm_cache_s']:.2f} s")
                elif "wall_losses_len" in r:
                    note = f"wall: first call, {r['wall_losses_len']} steps"
                elif "wall_note" in r or label.startswith("  svi.run"):
                    note = "wall extrapolated"
                else:
                    note = r.get("note", "")
                lines.append(
                    f"{'':<14} {label:<28} {num(r['step_s'], 10, 2, 1e6)} {num(r.get('step_cpu_s'), 10, 2, 1e6)} "
                    f"{num(r.get('ratio'), 8, 2)} {num(r.get('ratio_cpu'), 10, 2)} "
                    f"{num(r['wall_s'], 9, 2)} {num(r.get('intercept_s'), 9, 3)}  {note}")
        if "paired_provi_over_hand" in case:
            pr = case["paired_provi_over_hand"]
            kept = pr["pairs"] - pr.get("dropped", 0)
            figures = (f"median {pr['median']:.3f} (min {pr['min']:.3f}, max {pr['max']:.3f})" if kept
                       else "no pair measured a step above the noise")
            lines.append(f"{'':<14} provi / hand-written, {kept} of {pr['pairs']} alternating pairs kept: {figures}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, < 60 s (smoke test)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "overhead.json"))
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    results = dict(machine=machine(), quick=args.quick, config=cfg, definitions=DEFINITIONS, cases={})
    for case in make_cases(cfg):
        results["cases"][case.name] = run_case(case)

    results["machine"]["loadavg_end"] = os.getloadavg()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

"""Gradient estimators on a discrete-latent model: gradient variance and time per step.

    python benchmarks/estimators.py [--quick] [--out estimators.json] [--genjax-python PATH]

On the two-layer sigmoid belief network of examples/discrete_latent.py, in one run:
  - each provi estimator configuration: the variance of its gradient estimate of the ELBO
    (ELBO(num_particles=4)) at common parameters (after a short warm-up fit), over many draws,
    and its time per optimisation step (compiled loop; steady state: long run minus short run);
  - time per step and gradient variance (same parameters, same number of draws) of Pyro's
    TraceGraph_ELBO (with and without its decaying-average baselines, settled first) and of
    NumPyro's TraceGraph_ELBO on the same model, and Pyro's TraceEnum_ELBO time per step (Pyro is
    optional: `pip install pyro-ppl torch`; skipped when missing);
  - genjax.vi (0.10.3, which pins an older jax, so it runs in its own virtual environment): with
    `--genjax-python PATH` (default: $PROVI_GENJAX_PYTHON), the data and the warm-up parameters
    go to a temporary directory and benchmarks/genjax_sbn.py runs in that interpreter with the same
    step counts and draws; its JSON (time per step, gradient variance at the same parameters) is
    recorded. Without it genjax is recorded as skipped, with the setup recipe.
Writes JSON (stdout, or --out). Timings are only comparable within one run on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import provi  # noqa: E402
from provi.programs import make_guide  # noqa: E402
from provi.core.model import inspect_model  # noqa: E402
from provi.estimators import init_states  # noqa: E402
from provi.programs import ModelProgram  # noqa: E402
from provi.engine.layout import split_data
from provi.engine.loss import make_loss  # noqa: E402
from _timing import block, steady_step  # noqa: E402


def _example():
    spec = importlib.util.spec_from_file_location("discrete_latent", ROOT / "examples" / "discrete_latent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _step_loop(loss, guide_prog, opt, data):
    """`run(state, n)`: n optimisation steps in one compiled fori_loop (the fit loop's step, no early stop)."""

    def body(_, st):
        params, opt_state, key = st
        key, sub = jax.random.split(key)
        (_, value), grads = jax.value_and_grad(loss, has_aux=True)(params, {}, sub, data)
        updates, opt_state = opt.update(grads, opt_state, params)
        new = provi.estimators.update_state(guide_prog, params, optax.apply_updates(params, updates), value)
        return new, opt_state, key

    return jax.jit(lambda st, n: jax.lax.fori_loop(0, n, body, st), static_argnums=1)


def _baseline_at(state, mean, square):
    """A baseline state whose value is the objective's mean: the scalar set to it; running moments
    set to it (a network baseline keeps its initial zero output, so it predicts the mean)."""
    one = jnp.asarray(1.0)
    if "layers" in state:
        return {**state, "average": mean, "square": square, "weight": one}
    if "baseline" in state:
        return {"baseline": mean}
    return {"average": mean, "weight": one}


def provi_estimators(ex, x, warm_params, draws, n_long, n_short, particles):
    """{config: {grad_var_total, grad_var_mean, step_s}} at the warm-up parameters."""
    out = {}
    info = inspect_model(ex.sbn, (x,), {})
    mp = ModelProgram(ex.sbn, info)
    data, layout = split_data((x,), {})
    opt = optax.adam(0.03)
    for name, ests in ex.CONFIGS.items():
        gp = make_guide(ex.sbn_guide, info, (x,), {}, jax.random.PRNGKey(0), ests)
        params = {"model": warm_params["model"], "guide": warm_params["guide"]}
        if st := init_states(gp):
            params["estimators"] = st
        loss = make_loss(mp, gp, ex.objective(name, particles), layout)
        keys = jax.random.split(jax.random.PRNGKey(1), draws)
        if "estimators" in params:  # baselines at a trained state: the mean objective at these parameters
            vals = jax.jit(jax.vmap(lambda k: loss(params, {}, k, data)[1]))(keys)
            fbar, f2 = jnp.mean(vals), jnp.mean(vals**2)
            params["estimators"] = {s: _baseline_at(st, fbar, f2) for s, st in params["estimators"].items()}
        grad = jax.jit(jax.vmap(lambda k: jax.grad(lambda p: loss(p, {}, k, data)[0])(params)["guide"]))
        g = block(grad(keys))
        flat = np.concatenate([np.asarray(v).reshape(draws, -1) for v in jax.tree.leaves(g)], axis=1)
        var = flat.var(0, ddof=1)
        step_fn = _step_loop(loss, gp, opt, data)
        state = (params, opt.init(params), jax.random.PRNGKey(2))
        step = steady_step(lambda n: block(step_fn(state, n)), n_long, n_short)
        out[name] = {
            "estimators": {k: v.name for k, v in gp.estimators.items()},
            "grad_var_total": float(var.sum()),
            "grad_var_mean": float(var.mean()),
            "step_s": step,
        }
        print(f"  provi {name:42s} var {var.sum():12.2f}  step {1e3 * step:8.3f} ms", file=sys.stderr)
    return out


def _variance(grads: list) -> dict:
    """Per-coordinate variance over draws of a list of {name: gradient} (one per draw)."""
    flat = np.stack([np.concatenate([np.asarray(g[k], np.float64).ravel() for k in sorted(g)]) for g in grads])
    var = flat.var(0, ddof=1)
    return {"grad_var_total": float(var.sum()), "grad_var_mean": float(var.mean())}


def numpyro_tracegraph(ex, x, warm_params, draws, n_long, n_short, particles):
    """NumPyro's TraceGraph_ELBO: its gradient variance for the guide at the warm parameters, and
    its time per step."""
    from numpyro.infer import SVI, TraceGraph_ELBO

    elbo = TraceGraph_ELBO(num_particles=particles)
    params = {**warm_params["model"], **warm_params["guide"]}
    guide_names = sorted(warm_params["guide"])
    grad = jax.jit(jax.vmap(lambda k: jax.grad(lambda p: elbo.loss(k, {**params, **p}, ex.sbn, ex.sbn_guide, x))(
        {n: params[n] for n in guide_names})))
    g = block(grad(jax.random.split(jax.random.PRNGKey(1), draws)))
    out = _variance([{k: v[i] for k, v in g.items()} for i in range(draws)])
    svi = SVI(ex.sbn, ex.sbn_guide, optax.adam(0.03), elbo)
    state = svi.init(jax.random.PRNGKey(0), x)
    update = jax.jit(lambda s, n: jax.lax.fori_loop(0, n, lambda i, s: svi.update(s, x)[0], s), static_argnums=1)
    out["step_s"] = steady_step(lambda n: block(update(state, n)), n_long, n_short)
    print(f"  numpyro TraceGraph_ELBO var {out['grad_var_total']:12.2f}  step {1e3 * out['step_s']:8.3f} ms", file=sys.stderr)
    return out


def pyro_variance(pyro, torch, m, g, loss, warm_params, draws, warmup=100):
    """Pyro's gradient variance for the guide's parameters at the warm parameters (its decaying
    baselines, if any, first run `warmup` gradient evaluations without a step, to settle)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    for part in ("model", "guide"):
        for k, v in warm_params[part].items():
            pyro.param(k, torch.tensor(np.asarray(v)))
    names = sorted(warm_params["guide"])
    grads = []
    for i in range(warmup + draws):
        for n in names:
            pyro.param(n).grad = None
        loss.loss_and_grads(m, g)
        if i >= warmup:
            grads.append({n: pyro.param(n).grad.detach().numpy().copy() for n in names})
    return _variance(grads)


def pyro_models(x_np, particles):
    import pyro
    import pyro.distributions as pdist
    import torch

    x = torch.tensor(np.asarray(x_np))
    n, d = x.shape
    H1, H2 = 4, 2
    bits1 = torch.tensor([[k >> i & 1 for i in range(H1)] for k in range(2**H1)], dtype=torch.float32)
    bits2 = torch.tensor([[k >> i & 1 for i in range(H2)] for k in range(2**H2)], dtype=torch.float32)

    def model():
        U = pyro.param("U", torch.zeros(H2, H1))
        W = pyro.param("W", torch.zeros(H1, d))
        b = pyro.param("b", torch.zeros(d))
        with pyro.plate("N", n):
            z2 = pyro.sample("z2", pdist.Bernoulli(0.5 * torch.ones(H2)).to_event(1))
            z1 = pyro.sample("z1", pdist.Bernoulli(logits=z2 @ U).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=z1 @ W + b).to_event(1), obs=x)

    def guide(baseline):
        V1 = pyro.param("V1", torch.zeros(d, H1))
        c1 = pyro.param("c1", torch.zeros(H1))
        V2 = pyro.param("V2", torch.zeros(H1, H2))
        c2 = pyro.param("c2", torch.zeros(H2))
        infer = {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}} if baseline else {}
        with pyro.plate("N", n):
            z1 = pyro.sample("z1", pdist.Bernoulli(logits=x @ V1 + c1).to_event(1), infer=infer)
            pyro.sample("z2", pdist.Bernoulli(logits=z1 @ V2 + c2).to_event(1), infer=infer)

    # TraceEnum: the same joint, with each row's latent bits as one enumerated Categorical state
    def enum_model():
        U = pyro.param("U", torch.zeros(H2, H1))
        W = pyro.param("W", torch.zeros(H1, d))
        b = pyro.param("b", torch.zeros(d))
        with pyro.plate("N", n):
            k2 = pyro.sample("k2", pdist.Categorical(logits=torch.zeros(2**H2)), infer={"enumerate": "parallel"})
            z2 = bits2[k2]
            lp1 = pdist.Bernoulli(logits=(z2 @ U).unsqueeze(-2)).log_prob(bits1).sum(-1)
            k1 = pyro.sample("k1", pdist.Categorical(logits=lp1), infer={"enumerate": "parallel"})
            pyro.sample("x", pdist.Bernoulli(logits=bits1[k1] @ W + b).to_event(1), obs=x)

    def enum_guide():
        pass

    return pyro, torch, model, guide, enum_model, enum_guide


def pyro_times(x, n_steps, particles, warm_params=None, draws=0):
    try:
        pyro, torch, model, guide, enum_model, enum_guide = pyro_models(x, particles)
    except ImportError as e:
        return {"skipped": f"pyro not installed ({e}); pip install pyro-ppl torch"}
    from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO

    out = {"pyro_version": pyro.__version__, "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
    runs = {
        "TraceGraph_ELBO (no baseline)": (model, lambda: guide(False), TraceGraph_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)),
        "TraceGraph_ELBO (decaying-average baseline)": (model, lambda: guide(True), TraceGraph_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)),
        "TraceEnum_ELBO (exact sum in the model)": (enum_model, enum_guide, TraceEnum_ELBO(max_plate_nesting=1)),
    }
    for name, (m, g, loss) in runs.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi = SVI(m, g, pyro.optim.Adam({"lr": 0.03}), loss)
        try:
            variance = {}
            if warm_params is not None and draws and not isinstance(loss, TraceEnum_ELBO):
                variance = pyro_variance(pyro, torch, m, g, loss, warm_params, draws)
                pyro.clear_param_store()
                pyro.set_rng_seed(0)
            for _ in range(5):
                svi.step()
            times = []
            for _ in range(3):
                t = time.perf_counter()
                for _ in range(n_steps):
                    svi.step()
                times.append((time.perf_counter() - t) / n_steps)
            out[name] = {"step_s": statistics.median(times), **variance}
        except Exception as e:  # report, do not hide
            out[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
        print(f"  pyro {name}: {out[name]}", file=sys.stderr)
    return out


GENJAX_SETUP = (
    "pass --genjax-python (or set PROVI_GENJAX_PYTHON) to a venv with genjax==0.10.3, which pins an older jax: "
    "python -m venv /work/genjax-venv && /work/genjax-venv/bin/pip install genjax==0.10.3"
)


def genjax_times(python, x, warm_params, draws, n_long, n_short):
    """Run benchmarks/genjax_sbn.py in the genjax interpreter on the same data and parameters."""
    if not python:
        return {"skipped": GENJAX_SETUP}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", np.asarray(x))
        np.savez(f"{tmp}/warm.npz", **{k: np.asarray(v) for part in ("model", "guide") for k, v in warm_params[part].items()})
        cmd = [python, str(ROOT / "benchmarks" / "genjax_sbn.py"), f"{tmp}/x.npy", "--params", f"{tmp}/warm.npz",
               "--n-long", str(n_long), "--n-short", str(n_short), "--draws", str(draws)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"error": f"{type(e).__name__}: {e}"[:2000], "python": python}
    sys.stderr.write(proc.stderr[-4000:])
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit status {proc.returncode}: {proc.stderr.strip()[-2000:]}", "python": python}
    try:
        return {"python": python, **json.loads(lines[-1])}
    except json.JSONDecodeError as e:
        return {"error": f"last stdout line is not JSON ({e}): {lines[-1][:500]}", "python": python}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--genjax-python", default=os.environ.get("PROVI_GENJAX_PYTHON"),
                    help="python of a venv with genjax==0.10.3 (default: $PROVI_GENJAX_PYTHON); skipped without")
    args = ap.parse_args(argv)
    ex = _example()
    n_rows = 16 if args.quick else 48
    draws = 64 if args.quick else 200
    n_long, n_short = (40, 10) if args.quick else (200, 50)
    particles = 4
    x = ex.make_data(n=n_rows)
    warm = ex.fit(x, {"z1": provi.estimators.MVD(), "z2": provi.estimators.MVD()}, steps=50 if args.quick else 500)
    report = {
        "benchmark": "gradient estimators on a two-layer sigmoid belief network",
        "model": {"rows": n_rows, "dims": int(x.shape[1]), "latents_per_row": [ex.H1, ex.H2], "particles": particles},
        "gradient_variance": f"per-coordinate variance of the guide-parameter gradient over {draws} draws, at parameters after a warm-up fit (RunningAverage and Learned baselines set to the mean objective there); total = sum over coordinates",
        "step_s": "seconds per optimisation step (gradient + Adam update), steady state in a compiled loop; Pyro: eager SVI.step",
        "machine": {"platform": platform.platform(), "cpus": jax.device_count(), "backend": jax.default_backend(), "note": "a shared machine: timings are noisy"},
        "versions": {"jax": jax.__version__, "provi": provi.__version__},
    }
    print("provi estimators:", file=sys.stderr)
    report["provi"] = provi_estimators(ex, x, warm.params, draws, n_long, n_short, particles)
    print("numpyro TraceGraph_ELBO:", file=sys.stderr)
    try:
        report["numpyro_TraceGraph_ELBO"] = numpyro_tracegraph(ex, x, warm.params, draws, n_long, n_short, particles)
    except Exception as e:
        report["numpyro_TraceGraph_ELBO"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    print("pyro:", file=sys.stderr)
    report["pyro"] = pyro_times(x, 5 if args.quick else 20, particles, warm.params, draws)
    print("genjax:", file=sys.stderr)
    report["genjax"] = genjax_times(args.genjax_python, x, warm.params, draws, n_long, n_short)
    text = json.dumps(report, indent=2)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()

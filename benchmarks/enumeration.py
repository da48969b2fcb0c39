"""Models with enumerated discrete sites: provi against NumPyro's TraceEnum_ELBO, in one process.

    python benchmarks/enumeration.py [--quick] [--json PATH]

Cases (the discrete sites summed out in the model, `infer={"enumerate": "parallel"}`):
  mixture   3-component Gaussian mixture, N = 10,000 (the weights, means and scale latent)
  annotate  Dawid-Skene annotation model, 500 items x 5 annotators, 3 classes (class prior and
            confusion matrices latent)
  hmm       4-state HMM with Gaussian emissions, T = 1,000, written with `scan` (transition
            matrix and emission means latent)

Each model writes its `infer` dict inline, a fresh dict per site: NumPyro's enum handler writes
into the dict it is given, and a dict shared by several sites makes NumPyro sum an HMM out wrongly
(provi protects itself with `provi.core.trace.OwnInfer`; NumPyro needs the fresh dicts). For the
HMM, both implementations' log p(x, params) at fixed parameters is also checked against a forward
algorithm (`log_joint_check`): NumPyro's TraceEnum_ELBO treats scan's time axis wrongly there.

Both fit a mean-field Gaussian over the continuous sites (provi `guide="meanfield"`; NumPyro
`AutoNormal`) by the single-particle ELBO with Adam(1e-2). Figures: steady-state seconds per step
((long run - short run) / steps, both compiled; provi's from `provi.fit` with `init="prior"`,
no early stop, no averaging; NumPyro's from `svi.update` in a jitted `lax.scan`), the two
alternated in pairs (provi / NumPyro, median and range), the compile time of each (first call
minus steady cost), and peak resident memory of the process. Pyro is not run here (not installed
on the machine these results come from). Accuracy against NUTS is in tests/integration.
"""

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.control_flow import scan
from numpyro.infer import SVI, TraceEnum_ELBO
from numpyro.infer.autoguide import AutoNormal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import paired_ratio, steady_state, timed  # noqa: E402

import provi  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def mixture(x):
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(jnp.array([-4.0, 0.0, 4.0]), 1.0).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("n", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(mu[z], sigma), obs=x)


def annotate(labels):
    pi = numpyro.sample("pi", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("annotator", labels.shape[1], dim=-2):
        with numpyro.plate("class", 3, dim=-1):
            beta = numpyro.sample("beta", dist.Dirichlet(jnp.ones(3) + 4.0 * jnp.eye(3)))
    with numpyro.plate("item", labels.shape[0], dim=-2):
        c = numpyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
        with numpyro.plate("position", labels.shape[1], dim=-1):
            numpyro.sample("y", dist.Categorical(beta[jnp.arange(labels.shape[1]), c]), obs=labels)


def hmm(obs):
    trans = numpyro.sample("trans", dist.Dirichlet(jnp.ones(4) + 8.0 * jnp.eye(4)).expand([4]).to_event(1))
    means = numpyro.sample("means", dist.Normal(jnp.arange(4.0), 1.0).to_event(1))

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(means[z], 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


def hmm_log_joint_check(obs):
    """log p(obs, trans, means) at fixed values, each implementation against the forward algorithm:
    NumPyro's TraceEnum_ELBO with a point-mass guide (its loss is then minus that log density) and
    provi's marginal density."""
    from numpyro.contrib.funsor import enum  # noqa: F401  (TraceEnum_ELBO needs funsor)
    from provi.core.bound import KeyStream

    trans = jnp.full((4, 4), 0.1 / 3) + (0.9 - 0.1 / 3) * jnp.eye(4)
    means = jnp.arange(4.0)
    emit = dist.Normal(means, 0.5).log_prob(obs[:, None])
    alpha = jnp.log(trans[0]) + emit[0]
    alpha = jax.lax.scan(lambda a, e: (jax.nn.logsumexp(a[:, None] + jnp.log(trans), 0) + e, None), alpha, emit[1:])[0]
    prior = dist.Dirichlet(jnp.ones(4) + 8.0 * jnp.eye(4)).log_prob(trans).sum() + dist.Normal(jnp.arange(4.0), 1.0).log_prob(means).sum()
    exact = float(jax.nn.logsumexp(alpha) + prior)

    def point(obs):
        numpyro.sample("trans", dist.Delta(trans, event_dim=2))
        numpyro.sample("means", dist.Delta(means, event_dim=1))

    numpyro_value = -float(TraceEnum_ELBO(max_plate_nesting=2).loss(jax.random.PRNGKey(0), {}, hmm, point, obs))
    alg = provi.setup(hmm, obs, guide="meanfield", init="prior")
    provi_value = float(alg.model.log_density({}, {"trans": trans, "means": means}, (obs,), {}, KeyStream(jax.random.PRNGKey(0))))
    return dict(exact=exact, numpyro_TraceEnum=numpyro_value, provi=provi_value)


def data(case, quick):
    rng = np.random.default_rng(0)
    if case == "mixture":
        n = 1_000 if quick else 10_000
        comp = rng.integers(0, 3, n)
        return (jnp.asarray((np.array([-4.0, 0.0, 4.0])[comp] + rng.normal(size=n)).astype(np.float32)),)
    if case == "annotate":
        items = 100 if quick else 500
        truth = rng.integers(0, 3, items)
        acc = np.array([0.9, 0.8, 0.7, 0.75, 0.6])
        labels = np.where(rng.random((items, 5)) < acc, truth[:, None], rng.integers(0, 3, (items, 5)))
        return (jnp.asarray(labels),)
    T = 200 if quick else 1_000
    states = np.zeros(T, int)
    for t in range(1, T):
        states[t] = states[t - 1] if rng.random() < 0.9 else rng.integers(0, 4)
    return (jnp.asarray((states + 0.5 * rng.normal(size=T)).astype(np.float32)),)


def numpyro_runner(model, args):
    hidden = lambda site: site.get("infer", {}).get("enumerate") == "parallel"  # noqa: E731
    guide = AutoNormal(numpyro.handlers.block(model, hide_fn=hidden))  # the guide covers the continuous sites
    svi = SVI(model, guide, optax.adam(1e-2), TraceEnum_ELBO(max_plate_nesting=2))
    state = svi.init(jax.random.PRNGKey(0), *args)
    compiled = {}

    def run(n):
        if n not in compiled:
            compiled[n] = jax.jit(lambda s: jax.lax.scan(lambda c, _: svi.update(c, *args), s, None, length=n))
        return compiled[n](state)

    return run


def provi_runner(model, args):
    def run(n):
        return provi.fit(model, *args, guide="meanfield", init="prior", steps=n, early_stop=False, average=False,
                         progress=False).losses

    return run


def measure(name, make_run, args, n_long, n_short, repeats):
    t_first, _ = timed(lambda: make_run()(n_short))
    run = make_run()
    run(n_short), run(n_long)
    out = steady_state(run, n_long, n_short, repeats)
    out["compile_s"] = max(t_first - out["t_short_s"], 0.0)
    return out, run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "enumeration.json"))
    a = p.parse_args(argv)
    n_long, n_short, repeats, pairs = (400, 100, 2, 2) if a.quick else (3000, 500, 3, 7)
    results = dict(machine=dict(platform=platform.platform(), python=platform.python_version(), jax=jax.__version__,
                                numpyro=numpyro.__version__), quick=a.quick, cases={})
    for case, model in (("mixture", mixture), ("annotate", annotate), ("hmm", hmm)):
        args = data(case, a.quick)
        entry = {}
        print(f"{case}: numpyro ...", file=sys.stderr, flush=True)
        np_run = pv_run = None
        try:
            entry["numpyro_TraceEnum_AutoNormal"], np_run = measure(case, lambda: numpyro_runner(model, args), args, n_long, n_short, repeats)
        except Exception as exc:  # a competitor's failure is a result, not a crash
            entry["numpyro_TraceEnum_AutoNormal"] = {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        print(f"{case}: provi ...", file=sys.stderr, flush=True)
        try:
            entry["provi"], pv_run = measure(case, lambda: provi_runner(model, args), args, n_long, n_short, repeats)
        except provi.errors.ModelError as exc:
            entry["provi"] = {"refused": str(exc).splitlines()[0]}
        if np_run is not None and pv_run is not None:
            entry["paired_provi_over_numpyro"] = paired_ratio(np_run, pv_run, n_long, n_short, pairs)
        if case == "hmm":
            entry["log_joint_check"] = hmm_log_joint_check(*args)
            print(f"hmm log p(x, params) at fixed params: {entry['log_joint_check']}", file=sys.stderr, flush=True)
        entry["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["cases"][case] = entry
    for case, entry in results["cases"].items():
        parts = [case.ljust(9)]
        for name in ("numpyro_TraceEnum_AutoNormal", "provi"):
            e = entry[name]
            parts.append(f"{name} {1e6 * e['step_s']:.1f} us/step (compile {e['compile_s']:.2f} s)" if "step_s" in e
                         else f"{name}: {e.get('refused') or e.get('failed')}"[:140])
        if "paired_provi_over_numpyro" in entry:
            pr = entry["paired_provi_over_numpyro"]
            parts.append(f"provi/numpyro paired {pr['median']:.2f} ({pr['min']:.2f}-{pr['max']:.2f})")
        print(" | ".join(parts))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1, default=float))
    print(json.dumps({k: {"provi_over_numpyro": v.get("paired_provi_over_numpyro", {}).get("median")} for k, v in results["cases"].items()}))


if __name__ == "__main__":
    main()

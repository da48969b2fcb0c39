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
minus steady cost), and peak resident memory of the process. Accuracy against NUTS is in
tests/integration.

Pyro (torch) is an optional third competitor, run only where `import pyro` succeeds (it is never a
dependency of provi; `pip install pyro-ppl torch`), otherwise recorded as not installed. The same
three models are written again in Pyro (`pyro_models`: same priors, likelihoods, data and
enumeration, plates with explicit dims; the HMM's time loop is `pyro.markov` over a Python loop,
Pyro having no scan) and fitted by `pyro.infer.SVI` with TraceEnum_ELBO and with JitTraceEnum_ELBO
(its torch.jit-traced loss), an AutoNormal guide over the model with the enumerated sites hidden,
Adam(1e-2), one particle, seed 0, float32, one torch thread (its tensors are small; two threads on
two busy cores made each small op about ten times slower). Pyro is slow per step, so its figure is
plain: the wall-clock (and CPU) time of a fixed number of steps after 5 warm-up steps, over that
number (200, 50 for the HMM; 30 with --quick), and the first step's time apart (tracing, for the jit).
`provi_over_pyro` is provi's steady-state step_s over that. Pyro runs after all the JAX cases, so
their peak memory is without torch. For the HMM, Pyro's log p(x, params) at the fixed parameters
of the check is recorded with the others.
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
from provi.examples.enumerated import annotation as annotate, mixture  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PYRO, PYRO_JIT = "pyro_TraceEnum_AutoNormal", "pyro_JitTraceEnum_AutoNormal"
# the fixed parameters of the HMM's log-joint check
CHECK_TRANS = (np.full((4, 4), 0.1 / 3) + (0.9 - 0.1 / 3) * np.eye(4)).astype(np.float32)
CHECK_MEANS = np.arange(4.0, dtype=np.float32)


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

    trans, means = jnp.asarray(CHECK_TRANS), jnp.asarray(CHECK_MEANS)
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


def pyro_models():
    """The three models in Pyro (torch), each as its NumPyro twin above, with its plate nesting (the
    HMM's time loop is `pyro.markov` over a Python loop: Pyro has no scan). ImportError without Pyro."""
    import pyro
    import pyro.distributions as pdist
    import torch

    def mixture(x):
        w = pyro.sample("w", pdist.Dirichlet(torch.ones(3)))
        mu = pyro.sample("mu", pdist.Normal(torch.tensor([-4.0, 0.0, 4.0]), 1.0).to_event(1))
        sigma = pyro.sample("sigma", pdist.HalfNormal(2.0))
        with pyro.plate("n", x.shape[0], dim=-1):
            z = pyro.sample("z", pdist.Categorical(w), infer={"enumerate": "parallel"})
            pyro.sample("x", pdist.Normal(mu[z], sigma), obs=x)

    def annotate(labels):
        pi = pyro.sample("pi", pdist.Dirichlet(torch.ones(3)))
        with pyro.plate("annotator", labels.shape[1], dim=-2):
            with pyro.plate("class", 3, dim=-1):
                beta = pyro.sample("beta", pdist.Dirichlet(torch.ones(3) + 4.0 * torch.eye(3)))
        with pyro.plate("item", labels.shape[0], dim=-2):
            c = pyro.sample("c", pdist.Categorical(pi), infer={"enumerate": "parallel"})
            with pyro.plate("position", labels.shape[1], dim=-1):
                pyro.sample("y", pdist.Categorical(beta[torch.arange(labels.shape[1]), c]), obs=labels)

    def hmm(obs):
        trans = pyro.sample("trans", pdist.Dirichlet(torch.ones(4) + 8.0 * torch.eye(4)).to_event(1))
        means = pyro.sample("means", pdist.Normal(torch.arange(4.0), 1.0).to_event(1))
        z = 0
        for t in pyro.markov(range(obs.shape[0])):
            z = pyro.sample(f"z_{t}", pdist.Categorical(trans[z]), infer={"enumerate": "parallel"})
            pyro.sample(f"x_{t}", pdist.Normal(means[z], 0.5), obs=obs[t])

    return dict(mixture=(mixture, 1), annotate=(annotate, 2), hmm=(hmm, 0))


def to_torch(a):
    """A JAX array as a torch tensor (integers as int64, which torch's Categorical wants)."""
    import torch

    a = np.array(a)
    return torch.as_tensor(a.astype(np.int64) if a.dtype.kind in "iu" else a)


def pyro_hmm_log_joint(model, obs):
    """Pyro's log p(obs, trans, means) at the fixed values of `hmm_log_joint_check`: minus its
    TraceEnum_ELBO loss with a point-mass guide."""
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import TraceEnum_ELBO

    def point(obs):
        pyro.sample("trans", pdist.Delta(to_torch(CHECK_TRANS), event_dim=2))
        pyro.sample("means", pdist.Delta(to_torch(CHECK_MEANS), event_dim=1))

    return -float(TraceEnum_ELBO(max_plate_nesting=0).loss(model, point, obs))


def pyro_step_time(model, args, max_plate_nesting, jit, steps, warmup=5):
    """Seconds per `svi.step` of Pyro's SVI ((Jit)TraceEnum_ELBO, AutoNormal over the continuous
    sites, Adam(1e-2)): `steps` steps timed after `warmup`, the first step's time apart."""
    import pyro
    from pyro import poutine
    from pyro.infer import SVI, JitTraceEnum_ELBO, TraceEnum_ELBO
    from pyro.infer.autoguide import AutoNormal

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    hidden = lambda msg: (msg.get("infer") or {}).get("enumerate") == "parallel"  # noqa: E731
    guide = AutoNormal(poutine.block(model, hide_fn=hidden))  # the guide covers the continuous sites
    elbo = (JitTraceEnum_ELBO if jit else TraceEnum_ELBO)(max_plate_nesting=max_plate_nesting)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    t_first, _ = timed(lambda: svi.step(*args))
    for _ in range(warmup - 1):
        svi.step(*args)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        loss = svi.step(*args)
    return dict(step_s=(time.perf_counter() - t0) / steps, step_cpu_s=(time.process_time() - c0) / steps,
                steps_timed=steps, warmup_steps=warmup, first_step_s=t_first, last_loss=loss)


def failure(exc):
    """A competitor's exception as a one-line result."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def pyro_cases(results, quick):
    """Add Pyro's figures to each case (after all the JAX ones: torch is imported only here)."""
    try:
        import pyro
        import torch

        models = pyro_models()
    except ImportError as exc:
        results["machine"]["pyro"] = f"not installed ({exc})"
        for case, entry in results["cases"].items():
            entry[PYRO] = entry[PYRO_JIT] = {"not_installed": True}
            entry["provi_over_pyro"] = entry["provi_over_pyro_jit"] = None
            if case == "hmm":
                entry.setdefault("log_joint_check", {})["pyro_TraceEnum"] = "not installed"
        return
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    results["machine"].update(pyro=pyro.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads())
    for case, entry in results["cases"].items():
        model, nesting = models[case]
        args = tuple(to_torch(x) for x in data(case, quick))
        steps = 30 if quick else 50 if case == "hmm" else 200
        for key, ratio, jit in ((PYRO, "provi_over_pyro", False), (PYRO_JIT, "provi_over_pyro_jit", True)):
            print(f"{case}: {key} ...", file=sys.stderr, flush=True)
            try:
                entry[key] = pyro_step_time(model, args, nesting, jit, steps)
            except Exception as exc:  # a competitor's failure is a result, not a crash
                entry[key] = {"failed": failure(exc)}
            both = "step_s" in entry[key] and "step_s" in entry["provi"]
            entry[ratio] = entry["provi"]["step_s"] / entry[key]["step_s"] if both else None
        if case == "hmm":
            check = entry.setdefault("log_joint_check", {})
            try:
                check["pyro_TraceEnum"] = pyro_hmm_log_joint(model, *args)
            except Exception as exc:
                check["pyro_TraceEnum"] = {"failed": failure(exc)}
            print(f"hmm log p(x, params), Pyro: {entry['log_joint_check']}", file=sys.stderr, flush=True)
        entry["peak_rss_mb_with_pyro"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
            entry["numpyro_TraceEnum_AutoNormal"] = {"failed": failure(exc)}
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
    pyro_cases(results, a.quick)
    for case, entry in results["cases"].items():
        parts = [case.ljust(9)]
        for name in ("numpyro_TraceEnum_AutoNormal", "provi", PYRO, PYRO_JIT):
            e = entry[name]
            if "step_s" not in e:  # refused, failed, or Pyro not installed
                parts.append(f"{name}: {e.get('refused') or e.get('failed') or 'not installed'}"[:140])
                continue
            first = f"compile {e['compile_s']:.2f} s" if "compile_s" in e else f"first step {e['first_step_s']:.2f} s"
            parts.append(f"{name} {1e6 * e['step_s']:.1f} us/step ({first})")
        if entry.get("paired_provi_over_numpyro", {}).get("median") is not None:
            pr = entry["paired_provi_over_numpyro"]
            parts.append(f"provi/numpyro paired {pr['median']:.2f} ({pr['min']:.2f}-{pr['max']:.2f})")
        for ratio, label in (("provi_over_pyro", "provi/pyro"), ("provi_over_pyro_jit", "provi/pyro-jit")):
            if entry.get(ratio) is not None:
                parts.append(f"{label} {entry[ratio]:.3g}")
        print(" | ".join(parts))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1, default=float))
    ratios = ("provi_over_pyro", "provi_over_pyro_jit")
    print(json.dumps({k: {"provi_over_numpyro": v.get("paired_provi_over_numpyro", {}).get("median"), **{r: v.get(r) for r in ratios}}
                      for k, v in results["cases"].items()}))


if __name__ == "__main__":
    main()

"""Continual learning benchmark: variational continual learning (VCL, Nguyen et al. 2018) with
`provi.fit`, with and without coresets, against plain fine-tuning and joint training.

Data: scikit-learn's digits (8x8, 1,797 images), 70/30 stratified train/test split, inputs
standardised with the training set's pixel means and sds. Five tasks, two settings:

- split: task t holds classes {2t, 2t+1}; multi-head (as VCL's split MNIST): the network's 10
  outputs are five 2-way heads, task t's logits are outputs 2t and 2t+1, and each test image is
  judged by its own task's head.
- permuted: task t is every image with its pixels shuffled by a fixed permutation (task 0: none);
  single head, 10-way.

Network: an MLP 64-100-10 (ReLU; 7,510 weights). Bayesian methods: each weight a latent site
(`provi.nn.bayesian_module`), fitted with `provi.fit(..., guide="meanfield")`, full batch, Adam
1e-2. The first task's prior is N(0, 1/fan-in) for weights and N(0, 1) for biases.

- VCL: the posterior of task t (mean field) is task t+1's prior; each fit starts at the previous
  posterior's means.
- VCL + coreset (random or k-centre, `provi.bdl.coreset`, 40 points per task), VCL's procedure:
  the posterior propagated from task to task is fitted on each task's data *without* its coreset;
  before predicting after task t, a second fit starts from that posterior as prior and fits the
  union of coresets 1..t; the predictions use this second posterior, which is then thrown away.
- fine-tuning: a deterministic MLP trained with Adam (1e-3, minibatch 32) on each task in turn.
- joint: one deterministic MLP trained with Adam on all five tasks' data together (an upper
  reference, not a continual method).

The prior carried between tasks: the mean-field posterior, passed to `bayesian_module` as
per-weight Normal priors (`vcl_prior`); `res.as_prior()` is the same Gaussian (independent normals
per site for a mean-field fit), and `check_prior` confirms on the first fit that both give the
same log density.

Reported: the average test accuracy over the tasks seen, after each task (the last one is the
headline), the accuracy on each task, and seconds. Variants: `--temperature T` scales every
Bayesian fit's likelihood by 1/T (a cold posterior for T < 1); `--init-mle` starts the first
task's fit at a network trained with Adam (VCL's start; provi's start sds, 0.1, are kept).

    python benchmarks/continual.py --quick --json PATH   # fewer steps and epochs
    python benchmarks/continual.py --json PATH           # the run recorded in results/continual.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

import provi
from provi import bdl
from provi.bdl import coreset

TASKS, HIDDEN, DRAWS, CORESET = 5, 100, 32, 40
NET0 = eqx.nn.MLP(64, 10, HIDDEN, 1, key=jax.random.key(0))


# ----------------------------------------------------------------------------- data


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    m, s = xtr.mean(0), xtr.std(0)
    s = np.where(s > 0, s, 1.0)
    return (xtr - m) / s, ytr, (xte - m) / s, yte


def make_tasks(setting):
    """Five tasks, each a dict of train/test arrays: x, y (the label within the task's head) and
    the task id t (which picks the head in the split setting)."""
    xtr, ytr, xte, yte = digits()
    perms = [np.arange(64)] + [np.random.default_rng(100 + t).permutation(64) for t in range(1, TASKS)]
    tasks = []
    for t in range(TASKS):
        if setting == "split":
            a, b = ytr // 2 == t, yte // 2 == t
            parts = (xtr[a], ytr[a] - 2 * t, xte[b], yte[b] - 2 * t)
        else:
            parts = (xtr[:, perms[t]], ytr, xte[:, perms[t]], yte)
        tasks.append({k: jnp.asarray(v) for k, v in zip(("x", "y", "xte", "yte"), parts)}
                     | {"t": jnp.full(parts[1].shape, t, jnp.int32), "tte": jnp.full(parts[3].shape, t, jnp.int32)})
    return tasks


def heads(logits, t, setting):
    """Task t's logits: outputs 2t, 2t+1 (split, multi-head) or all ten (permuted)."""
    if setting == "permuted":
        return logits
    return jnp.take_along_axis(logits, 2 * t[:, None] + jnp.arange(2), axis=1)


# ----------------------------------------------------------------------------- Bayesian (VCL)


def fan_in_prior(site, w):
    return dist.Normal(0.0, 1.0 / np.sqrt(w.shape[-1]) if w.ndim == 2 else 1.0)


def vcl_prior(loc, scale):
    """A mean-field posterior (per-site means and sds) as `bayesian_module`'s per-weight prior."""
    return lambda site, w: dist.Normal(loc[site], scale[site])


def bnn(x, y, t, setting, prior, temperature=1.0):
    net = provi.nn.bayesian_module("mlp", NET0, prior=prior)
    with numpyro.plate("data", x.shape[0]), numpyro.handlers.scale(scale=1.0 / temperature):
        numpyro.sample("y", dist.Categorical(logits=heads(jax.vmap(net)(x), t, setting)), obs=y)


def posterior(res):
    """Per-site means and sds of a mean-field fit (exact: from its parameters, not draws)."""
    mean, cov = res.guide.moments(res.params["guide"], res.consts)
    space = res.guide.space
    return space.unflatten(mean), space.unflatten(jnp.sqrt(jnp.diag(cov)))


def fit(x, y, t, setting, prior, start, args, seed):
    """One mean-field fit; `start` (site means) is where it starts, else a prior draw."""
    init = "prior" if start is None else start
    return provi.fit(bnn, x, y, t, setting=setting, prior=prior, temperature=args.temperature, guide="meanfield", init=init,
                     optimizer=optax.adam(1e-2), steps=args.steps, progress=False, seed=seed)


def predict(loc_scale, x, t, setting, key):
    """Log predictive probabilities averaged over DRAWS weights from the mean-field posterior."""
    loc, scale = loc_scale

    def logits(k):
        ks = dict(zip(loc, jax.random.split(k, len(loc))))
        w = {s: loc[s] + scale[s] * jax.random.normal(ks[s], loc[s].shape) for s in loc}
        with numpyro.handlers.substitute(data=w), numpyro.handlers.seed(rng_seed=0):
            return heads(jax.vmap(provi.nn.bayesian_module("mlp", NET0))(x), t, setting)

    return bdl.log_predictive(jax.vmap(logits)(jax.random.split(key, DRAWS)))


def accuracies(post, tasks, upto, setting, key=jax.random.key(7)):
    return [float(bdl.accuracy(predict(post, d["xte"], d["tte"], setting, key), d["yte"])) for d in tasks[: upto + 1]]


def weights_of(net):
    """{site: array} of `net`'s weights under `bayesian_module("mlp", ...)`'s site names."""
    names = numpyro.handlers.trace(numpyro.handlers.seed(lambda: provi.nn.bayesian_module("mlp", NET0), 0)).get_trace()
    return dict(zip(names, [w for w in jax.tree_util.tree_leaves(net) if eqx.is_inexact_array(w)]))


def check_prior(res, d, setting):
    """The diagonal prior built from `res` and `res.as_prior()` give the same log density (up to
    float32 rounding) at a draw: the benchmark's shortcut is the library's prior, just cheaper."""
    loc, scale = posterior(res)
    w = {k: jnp.asarray(v[0]) for k, v in res.sample(1, seed=3).items() if k.startswith("mlp.")}
    args = (d["x"], d["y"], d["t"])
    kw = dict(setting=setting, prior=vcl_prior(loc, scale))
    fast = numpyro.infer.util.log_density(bnn, args, kw, w)[0]
    slow = numpyro.infer.util.log_density(res.as_prior(), args, dict(setting=setting, prior=fan_in_prior), w)[0]
    return float(fast), float(slow)


def vcl(tasks, setting, args, select=None):
    """VCL over the tasks; with `select` ("random" or "kcenter") a coreset of CORESET points per
    task, refitted before each prediction. Returns the average accuracy after each task."""
    prior, start, post, cores, avg, extra = fan_in_prior, None, None, [], [], {"task_accs": []}
    for i, d in enumerate(tasks):
        x, y, t = d["x"], d["y"], d["t"]
        if select is not None:
            n = x.shape[0]
            idx = coreset.random_coreset(jax.random.key(50 + i), n, CORESET) if select == "random" else coreset.k_center(x, CORESET)
            core, (x, y, t) = coreset.split(idx, d["x"], d["y"], d["t"])
            cores.append(core)
        if i == 0 and args.init_mle:  # VCL's start: the first fit at a maximum-likelihood network
            start = weights_of(train(NET0, x, y, t, setting, args.epochs, jax.random.key(0)))
        res = fit(x, y, t, setting, prior, start, args, seed=i)
        if i == 0 and select is None and args.check:
            extra["check_prior_log_density(fast, as_prior)"] = check_prior(res, d, setting)
        post = posterior(res)
        prior, start = vcl_prior(*post), post[0]
        if select is not None:  # the prediction posterior: refit on coresets 1..i from the propagated one
            cx, cy, ct = coreset.union(*cores)
            pred = posterior(fit(cx, cy, ct, setting, prior, start, args, seed=100 + i))
        else:
            pred = post
        accs = accuracies(pred, tasks, i, setting)
        extra["task_accs"].append(accs)
        avg.append(float(np.mean(accs)))
        print(f"  {setting} vcl{'' if select is None else '+' + select} after task {i}: {np.round(accs, 3).tolist()} avg {avg[-1]:.3f}", flush=True)
    return avg, extra


# ----------------------------------------------------------------------------- deterministic baselines


def ce(net, x, y, t, setting):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(heads(jax.vmap(net)(x), t, setting)), y[:, None], axis=1))


def train(net, x, y, t, setting, epochs, key, lr=1e-3, batch=32):
    opt = optax.adam(lr)
    n = x.shape[0]

    @eqx.filter_jit
    def epoch(net, state, key):
        idx = jax.random.permutation(key, n)[: (n // batch) * batch].reshape(-1, batch)
        params, static = eqx.partition(net, eqx.is_inexact_array)

        def step(carry, i):
            params, state = carry
            g = jax.grad(lambda p: ce(eqx.combine(p, static), x[i], y[i], t[i], setting))(params)
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), None

        params, state = jax.lax.scan(step, (params, state), idx)[0]
        return eqx.combine(params, static), state

    state = opt.init(eqx.filter(net, eqx.is_inexact_array))
    for e in range(epochs):
        net, state = epoch(net, state, jax.random.fold_in(key, e))
    return net


def point_accuracies(net, tasks, upto, setting):
    return [float(jnp.mean(jnp.argmax(heads(jax.vmap(net)(d["xte"]), d["tte"], setting), 1) == d["yte"])) for d in tasks[: upto + 1]]


def finetune(tasks, setting, args):
    net, avg, rows = NET0, [], []
    for i, d in enumerate(tasks):
        net = train(net, d["x"], d["y"], d["t"], setting, args.epochs, jax.random.key(i))
        rows.append(point_accuracies(net, tasks, i, setting))
        avg.append(float(np.mean(rows[-1])))
    return avg, {"task_accs": rows}


def joint(tasks, setting, args):
    x, y, t = coreset.union(*[(d["x"], d["y"], d["t"]) for d in tasks])
    net = train(NET0, x, y, t, setting, args.epochs, jax.random.key(0))
    return float(np.mean(point_accuracies(net, tasks, TASKS - 1, setting)))


# ----------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and epochs, random coreset only")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    p.add_argument("--steps", type=int, default=None, help="provi.fit steps per fit (default 3000, quick 400)")
    p.add_argument("--epochs", type=int, default=None, help="Adam epochs per task for the baselines (default 50, quick 10)")
    p.add_argument("--settings", default="split,permuted")
    p.add_argument("--temperature", type=float, default=1.0, help="likelihood tempering 1/T in every Bayesian fit (default 1: the posterior)")
    p.add_argument("--init-mle", action="store_true", help="start the first task's fit at a network trained with Adam (as VCL does)")
    p.add_argument("--methods", default="finetune,vcl,vcl_random,vcl_kcenter,joint", help="a subset to run")
    args = p.parse_args()
    args.steps = args.steps or (400 if args.quick else 3000)
    args.epochs = args.epochs or (10 if args.quick else 50)
    args.check = True
    selections = ("random",) if args.quick else ("random", "kcenter")
    t0 = time.perf_counter()
    out = {"temperature": args.temperature, "init_mle": args.init_mle, "steps": args.steps, "epochs": args.epochs, "coreset": CORESET, "hidden": HIDDEN, "draws": DRAWS}
    for setting in args.settings.split(","):
        tasks = make_tasks(setting)
        out[f"{setting}_train_sizes"] = [int(d["x"].shape[0]) for d in tasks]
        for name, run in [("finetune", lambda: finetune(tasks, setting, args))] + [
            ("vcl", lambda: vcl(tasks, setting, args))] + [
            (f"vcl_{s}", lambda s=s: vcl(tasks, setting, args, s)) for s in selections]:
            if name not in args.methods:
                continue
            t1 = time.perf_counter()
            avg = run()
            if isinstance(avg, tuple):
                avg, extra = avg
                out.update({f"{setting}_{name}_{k}" if k == "task_accs" else f"{setting}_{k}": v for k, v in extra.items()})
            out[f"{setting}_{name}_avg_acc"] = avg
            out[f"{setting}_{name}_s"] = time.perf_counter() - t1
            print(f"{setting} {name}: average accuracy after each task {np.round(avg, 3).tolist()} ({out[f'{setting}_{name}_s']:.0f} s)", flush=True)
        if "joint" not in args.methods:
            continue
        t1 = time.perf_counter()
        out[f"{setting}_joint_avg_acc"] = joint(tasks, setting, args)
        out[f"{setting}_joint_s"] = time.perf_counter() - t1
        print(f"{setting} joint: {out[f'{setting}_joint_avg_acc']:.3f}", flush=True)
    out.update(seconds=time.perf_counter() - t0,
               machine=f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())

"""Bayesian deep learning benchmark: AdamW, IVON, MC dropout, a deep ensemble, mean-field Bayes by
backprop (provi.fit), VBLL and a last-layer Laplace on the same networks and data.

Classification: scikit-learn's digits (8x8), classes 0-7 in distribution (70/30 train/test split),
classes 8-9 as out-of-distribution inputs; an MLP 64-128-128-8 (ReLU), minibatch 64.
Regression: scikit-learn's diabetes (standardised), 80/20 split, an MLP 10-50-50-1, Gaussian
likelihood with a learned noise scale (VBLL: its own), minibatch 32, 30 epochs (every method
overfits the 353 training points when trained longer: at 60 epochs every test NLL is worse, at
450 AdamW's passes 100; 30 is not tuned per method).
Columns: accuracy / RMSE, NLL, ECE (15 bins), Brier, OOD AUROC (predictive entropy), training
seconds, and IVON's time per step over AdamW's, measured in alternating pairs of jitted epochs.

The classifier's AdamW and IVON are trained with their learning rate annealed to 0 by a cosine
over the run, as the IVON authors train (`cosine`); the other AdamW-trained methods use AdamW's
chosen setting the same way. AdamW's (peak learning rate, weight decay) and IVON's (peak learning
rate, `hess_init`, weight decay) are chosen from grids (`ADAMW_GRID`, `IVON_GRID`) by the NLL on a
validation split (20% of the training set, stratified; IVON by its MC predictive), each setting
trained there for the same epochs; the chosen ones are then trained on the whole training set and
judged on the test set (`--no-select`: the command line's values, weight decay 1e-4). IVON is
judged twice from the one fit: by its MC predictive over `DRAWS` posterior draws ("ivon") and at
its posterior mean ("ivon_mean", Shen et al.'s IVON@mean). Each against AdamW on the test set:
the NLL difference with its paired standard error (per image), and the ECE difference with a
paired bootstrap standard error. Then the chosen settings are trained again from `--seeds`
initialisations and batch orders (5; the first is the main run's), and each IVON predictive's NLL
and ECE minus AdamW's is given per seed, with its mean and standard error over seeds.

    python benchmarks/bdl.py --quick --json    # fewer epochs and pairs
    python benchmarks/bdl.py --json            # the run recorded in RESULTS.md

The last line with --json is one JSON object with `adamw_acc`, `adamw_nll`, `adamw_ece`,
`ivon_acc`, `ivon_nll`, `ivon_ece` and `ivon_over_adamw_step` (and every other figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
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
from provi.optim import ivon, ivon_sample
from provi.estimators import LocalReparam

RESULTS = Path(__file__).resolve().parent / "results"
DRAWS = 32  # posterior / dropout draws for every predictive
ADAMW_GRID = tuple((lr, wd) for lr in (1e-3, 3e-3, 1e-2) for wd in (1e-4, 1e-2))  # AdamW's (peak learning rate, weight decay)
IVON_GRID = tuple((lr, h, wd) for lr in (0.1, 0.2, 0.5, 1.0) for h in (0.1, 0.3, 1.0) for wd in (1e-4, 1e-3))  # IVON's (peak lr, hess_init, wd)
BOOTSTRAP = 2000  # paired resamples of the test set for the ECE difference's standard error


class MLP(eqx.Module):
    """ReLU MLP; `features` gives the last hidden layer, `dropout` applies inverted dropout."""

    layers: tuple

    def __init__(self, sizes, key):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))

    def features(self, x, key=None, rate=0.0):
        for i, layer in enumerate(self.layers[:-1]):
            x = jax.nn.relu(layer(x))
            if key is not None:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - rate, x.shape)
                x = jnp.where(keep, x / (1 - rate), 0.0)
        return x

    def __call__(self, x, key=None, rate=0.0):
        return self.layers[-1](self.features(x, key, rate))


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    inside = y < 8
    xtr, xte, ytr, yte = train_test_split(x[inside], y[inside], test_size=0.3, random_state=0, stratify=y[inside])
    return tuple(map(jnp.asarray, (xtr, ytr, xte, yte, x[~inside])))


def diabetes():
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    d = load_diabetes()
    x, y = d.data.astype(np.float32), d.target.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
    mx, sx, my, sy = xtr.mean(0), xtr.std(0), ytr.mean(), ytr.std()
    return tuple(map(jnp.asarray, ((xtr - mx) / sx, (ytr - my) / sy, (xte - mx) / sx, (yte - my) / sy)))


def batches(key, n, batch):
    """Index batches of one shuffled epoch, shape (n // batch, batch)."""
    perm = jax.random.permutation(key, n)
    return perm[: (n // batch) * batch].reshape(-1, batch)


def cosine(lr, epochs, n, batch):
    """The learning rate `lr` annealed to 0 over the run by a cosine (as the IVON authors train)."""
    return optax.cosine_decay_schedule(lr, epochs * (n // batch))


def train(params, opt, loss_grad, key, epochs, n, batch):
    """Minibatch training as one jitted epoch function; returns params and seconds spent."""

    @jax.jit
    def epoch(params, state, key):
        kb, ks = jax.random.split(key)

        def step(carry, xs):
            params, state = carry
            idx, k = xs
            grads = loss_grad(params, state, idx, k)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        idx = batches(kb, n, batch)
        (params, state), _ = jax.lax.scan(step, (params, state), (idx, jax.random.split(ks, idx.shape[0])))
        return params, state

    state = opt.init(params)
    t0 = time.perf_counter()
    for e in range(epochs):
        params, state = epoch(params, state, jax.random.fold_in(key, e))
    jax.block_until_ready(params)
    return params, state, time.perf_counter() - t0, epoch


# ----------------------------------------------------------------------------- classification


def ce(net, x, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(jax.vmap(net)(x)), y[:, None], axis=1))


def classification(args):
    xtr, ytr, xte, yte, xood = digits()
    n, K = xtr.shape[0], 8
    sizes = (64, 128, 128, K)
    key = jax.random.key(0)
    out, logp, times = {}, {}, {}
    bs = 64

    def judge(name, lp_in, lp_out):
        logp[name] = lp_in
        out.update({
            f"{name}_acc": float(bdl.accuracy(lp_in, yte)), f"{name}_nll": float(bdl.nll(lp_in, yte)),
            f"{name}_ece": float(bdl.ece(lp_in, yte)), f"{name}_brier": float(bdl.brier(lp_in, yte)),
            f"{name}_ood_auroc": float(bdl.ood_auroc(lp_in, lp_out)),
        })

    net0 = MLP(sizes, key)

    def adamw_opt(setting, n):
        lr, wd = setting
        return optax.adamw(cosine(lr, args.epochs, n, bs), weight_decay=wd)

    def fit_adamw(setting, x, y, seed=0):  # seed: the initialisation and the batch order (0: net0 and key)
        k = jax.random.key(seed)
        grad = lambda p, s, idx, k: jax.grad(ce)(p, x[idx], y[idx])
        net, _, seconds, _ = train(MLP(sizes, k), adamw_opt(setting, x.shape[0]), grad, k, args.epochs, x.shape[0], bs)
        return (lambda xs: jax.nn.log_softmax(jax.vmap(net)(xs))), seconds, net

    def fit_ivon(setting, x, y, seed=0):  # ess = N, prior precision N * weight_decay
        """(MC predictive over DRAWS posterior draws, seconds, the predictive at the posterior mean)."""
        lr, hess_init, wd = setting
        k = jax.random.key(seed)
        opt = ivon(cosine(lr, args.epochs, x.shape[0], bs), ess=float(x.shape[0]), hess_init=hess_init, weight_decay=wd, beta2=args.beta2)
        grad = lambda p, s, idx, k: opt.value_and_grad(ce)(k, p, s, x[idx], y[idx])[1]
        net, state, seconds, _ = train(MLP(sizes, k), opt, grad, k, args.epochs, x.shape[0], bs)
        draws = jax.vmap(lambda k: ivon_sample(k, net, state))(jax.random.split(jax.random.key(1 + 1000 * seed), DRAWS))
        return ((lambda xs: bdl.log_predictive(jax.vmap(lambda p: jax.vmap(p)(xs))(draws))), seconds,
                (lambda xs: jax.nn.log_softmax(jax.vmap(net)(xs))))

    chosen = {"adamw": (args.lr, 1e-4), "ivon": (args.ivon_lr, args.hess_init, 1e-4)}
    if args.select:
        split = validation_split(xtr, ytr)
        for name, fit_one, grid in (("adamw", fit_adamw, ADAMW_GRID), ("ivon", fit_ivon, IVON_GRID)):
            chosen[name], val = select(fit_one, grid, *split)
            out[f"{name}_validation_nll"] = {str(g): v for g, v in val.items()}
    out.update(adamw_lr=chosen["adamw"][0], adamw_weight_decay=chosen["adamw"][1], ivon_lr=chosen["ivon"][0],
               ivon_hess_init=chosen["ivon"][1], ivon_weight_decay=chosen["ivon"][2])
    adamw_pred, times["adamw"], adamw_net = fit_adamw(chosen["adamw"], xtr, ytr)
    judge("adamw", adamw_pred(xte), adamw_pred(xood))
    ivon_pred, times["ivon"], ivon_mean = fit_ivon(chosen["ivon"], xtr, ytr)
    judge("ivon", ivon_pred(xte), ivon_pred(xood))
    judge("ivon_mean", ivon_mean(xte), ivon_mean(xood))  # "IVON@mean" (Shen et al. 2024): the same fit, at its mean
    out.update(paired_differences(logp["ivon"], logp["adamw"], yte, "ivon_minus_adamw"))
    out.update(paired_differences(logp["ivon_mean"], logp["adamw"], yte, "ivon_mean_minus_adamw"))
    if args.seeds > 1:  # the same two settings from other initialisations and batch orders
        out.update(seed_study(fit_adamw, fit_ivon, chosen, xtr, ytr, xte, yte, args.seeds))
    # the other AdamW-trained methods (dropout, ensemble, VBLL) use AdamW's chosen learning rate
    adamw = adamw_opt(chosen["adamw"], n)
    adamw_grad = lambda p, s, idx, k: jax.grad(ce)(p, xtr[idx], ytr[idx])

    out.update(step_ratio(xtr, ytr, sizes, bs, args, ""))
    out.update(step_ratio(xtr, ytr, (64, 512, 512, K), 256, args, "_wide"))

    # MC dropout (rate 0.1), trained with AdamW
    rate = 0.1
    drop_loss = lambda p, x, y, k: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(jax.vmap(lambda xi, ki: p(xi, ki, rate))(x, jax.random.split(k, x.shape[0]))), y[:, None], axis=1))
    drop_grad = lambda p, s, idx, k: jax.grad(drop_loss)(p, xtr[idx], ytr[idx], k)
    drop_net, _, times["mc_dropout"], _ = train(net0, adamw, drop_grad, key, args.epochs, n, bs)
    dropped = lambda x: bdl.log_predictive(jax.vmap(lambda k: jax.vmap(lambda xi, ki: drop_net(xi, ki, rate))(x, jax.random.split(k, x.shape[0])))(jax.random.split(jax.random.key(2), DRAWS)))
    judge("mc_dropout", dropped(xte), dropped(xood))

    # deep ensemble of 5 AdamW networks (different initialisations and batch orders)
    t0 = time.perf_counter()
    members = [train(MLP(sizes, jax.random.key(10 + m)), adamw, adamw_grad, jax.random.key(20 + m), args.epochs, n, bs)[0] for m in range(5)]
    times["ensemble"] = time.perf_counter() - t0
    ens = lambda x: bdl.log_predictive(jnp.stack([jax.vmap(m)(x) for m in members]))
    judge("ensemble", ens(xte), ens(xood))

    # last-layer Laplace on the AdamW network: GGN of the last layer, prior precision by validation NLL
    judge("ll_laplace", *last_layer_laplace(adamw_net, xtr, ytr, xte, xood, K))

    # VBLL: the MLP's features with a VBLL classification head, trained jointly with AdamW
    head = bdl.vbll.Classification(128, K, key=jax.random.key(3), cov="dense", prior_scale=1.0)
    vb = (MLP(sizes, key), head)
    vbll_loss = lambda p, x, y: p[1].loss(jax.vmap(p[0].features)(x), y, n)
    vbll_grad = lambda p, s, idx, k: jax.grad(vbll_loss)(p, xtr[idx], ytr[idx])
    vb, _, times["vbll"], _ = train(vb, adamw, vbll_grad, key, args.epochs, n, bs)
    pred = lambda x: jnp.log(vb[1].predictive(jax.vmap(vb[0].features)(x), key=jax.random.key(4), num_samples=256))
    judge("vbll", pred(xte), pred(xood))

    # mean-field Bayes by backprop with provi.fit: weights N(0, 1 / fan-in), biases N(0, 1), minibatches
    # of 64; at temperature 1 (the ELBO), with local reparameterization of every layer, and at 0.1 (a
    # cold posterior: the likelihood scaled by 10)
    def bnn(x, y=None, batch=None, temperature=1.0):
        net = provi.nn.bayesian_module("mlp", net0, prior=fan_in_prior)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx, numpyro.handlers.scale(scale=1.0 / temperature):
            numpyro.sample("y", dist.Categorical(logits=jax.vmap(net)(x[idx])), obs=None if y is None else y[idx])

    def bbb_logits(draw, x):
        with numpyro.handlers.substitute(data=draw), numpyro.handlers.seed(rng_seed=0):
            return jax.vmap(provi.nn.bayesian_module("mlp", net0))(x)

    local = {f"mlp.layers.{i}.{p}": LocalReparam() for i in range(len(net0.layers)) for p in ("weight", "bias")}
    for name, temperature, estimators in (("bbb", 1.0, None), ("bbb_local", 1.0, local), ("bbb_cold", 0.1, None)):
        t0 = time.perf_counter()
        res = provi.fit(bnn, xtr, ytr, batch=bs, temperature=temperature, guide="meanfield", init="prior",
                        estimators=estimators, optimizer=optax.adam(1e-2), steps=args.epochs * (n // bs), progress=False)
        times[name] = time.perf_counter() - t0
        w = {k: jnp.asarray(v) for k, v in res.sample(DRAWS, seed=5).items() if k.startswith("mlp.")}
        bbb = lambda x: bdl.log_predictive(jax.vmap(bbb_logits, in_axes=(0, None))(w, x))
        judge(name, bbb(xte), bbb(xood))
    out.update({f"{k}_train_s": v for k, v in times.items()})
    return out, logp, yte


def seed_study(fit_adamw, fit_ivon, chosen, xtr, ytr, xte, yte, seeds):
    """AdamW and IVON at their chosen settings, trained from `seeds` initialisations and batch
    orders (seed 0 is the main run's): test accuracy, NLL and ECE per seed of AdamW, of IVON's MC
    predictive and of IVON at its mean (the same fit), and each IVON predictive's NLL and ECE minus
    AdamW's per seed with their mean and standard error over seeds (the training's randomness; the
    test set is the same for every seed)."""
    rows = {"adamw": [], "ivon": [], "ivon_mean": []}
    metrics = lambda lp: {"acc": float(bdl.accuracy(lp, yte)), "nll": float(bdl.nll(lp, yte)), "ece": float(bdl.ece(lp, yte))}  # noqa: E731
    for seed in range(seeds):
        rows["adamw"].append(metrics(fit_adamw(chosen["adamw"], xtr, ytr, seed)[0](xte)))
        mc, _, mean = fit_ivon(chosen["ivon"], xtr, ytr, seed)
        rows["ivon"].append(metrics(mc(xte)))
        rows["ivon_mean"].append(metrics(mean(xte)))
    out = {f"seeds_{name}": r for name, r in rows.items()}
    for name, r in rows.items():
        for metric in ("acc", "nll", "ece"):
            out[f"seeds_{name}_{metric}_mean"] = float(np.mean([x[metric] for x in r]))
    out.update(seeds=seeds)
    for name in ("ivon", "ivon_mean"):
        for metric in ("nll", "ece"):
            diff = np.array([i[metric] - a[metric] for i, a in zip(rows[name], rows["adamw"])])
            key = f"seeds_{name}_minus_adamw_{metric}"
            out.update({key: diff.tolist(), key + "_mean": float(diff.mean()), key + "_se": float(diff.std(ddof=1) / np.sqrt(seeds))})
    return out


def validation_split(x, y, fraction=0.2):
    """(x_fit, y_fit, x_val, y_val): a stratified split of the training set, fixed seed."""
    from sklearn.model_selection import train_test_split

    xf, xv, yf, yv = train_test_split(np.asarray(x), np.asarray(y), test_size=fraction, random_state=1, stratify=np.asarray(y))
    return tuple(map(jnp.asarray, (xf, yf, xv, yv)))


def select(fit_one, grid, x_fit, y_fit, x_val, y_val):
    """The setting of `grid` whose fit on (x_fit, y_fit) has the lowest NLL on the validation
    split, and every setting's validation NLL. `fit_one(setting, x, y)` returns (predict, ...)."""
    val = {g: float(bdl.nll(fit_one(g, x_fit, y_fit)[0](x_val), y_val)) for g in grid}
    return min(val, key=val.get), val


def paired_differences(lp_a, lp_b, y, name, seed=0):
    """Method a minus method b on the same test set: the NLL difference with its paired standard
    error (sd of the per-example differences / sqrt(n)), and the ECE difference with a paired
    bootstrap standard error (`BOOTSTRAP` resamples of the test examples)."""
    lp_a, lp_b, y = np.asarray(lp_a), np.asarray(lp_b), np.asarray(y)
    n = len(y)
    d = -lp_a[np.arange(n), y] + lp_b[np.arange(n), y]
    idx = np.random.default_rng(seed).integers(0, n, (BOOTSTRAP, n))
    a, b, labels = jnp.asarray(lp_a), jnp.asarray(lp_b), jnp.asarray(y)
    ece = jax.jit(jax.vmap(lambda i: bdl.ece(a[i], labels[i]) - bdl.ece(b[i], labels[i])))
    boot = np.asarray(ece(jnp.asarray(idx)))
    return {f"{name}_nll": float(d.mean()), f"{name}_nll_se": float(d.std(ddof=1) / np.sqrt(n)),
            f"{name}_ece": float(bdl.ece(lp_a, y) - bdl.ece(lp_b, y)), f"{name}_ece_se": float(boot.std(ddof=1))}


def step_ratio(xtr, ytr, sizes, bs, args, suffix):
    """IVON's time per step over AdamW's on an MLP of `sizes`, minibatch `bs`: one jitted epoch
    of each, alternated in pairs (so slow spells of the machine hit both); median, min and max."""
    n, net0, wd = xtr.shape[0], MLP(sizes, jax.random.key(0)), 1e-4
    adamw = optax.adamw(args.lr, weight_decay=wd)
    opt = ivon(args.ivon_lr, ess=float(n), hess_init=args.hess_init, weight_decay=wd, beta2=args.beta2)
    _, sa, _, adamw_epoch = train(net0, adamw, lambda p, s, idx, k: jax.grad(ce)(p, xtr[idx], ytr[idx]), jax.random.key(0), 1, n, bs)
    _, si, _, ivon_epoch = train(net0, opt, lambda p, s, idx, k: opt.value_and_grad(ce)(k, p, s, xtr[idx], ytr[idx])[1], jax.random.key(0), 1, n, bs)
    ratios = []
    for r in range(args.pairs):
        k = jax.random.key(100 + r)
        t0 = time.perf_counter()
        jax.block_until_ready(adamw_epoch(net0, sa, k))
        t1 = time.perf_counter()
        jax.block_until_ready(ivon_epoch(net0, si, k))
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
    name = f"ivon_over_adamw_step{suffix}"
    return {name: statistics.median(ratios), name + "_min": min(ratios), name + "_max": max(ratios),
            name + "_config": f"MLP {sizes}, batch {bs}, {n // bs} steps per epoch"}


def fan_in_prior(site, w):
    return dist.Normal(0.0, 1.0 / np.sqrt(w.shape[-1]) if w.ndim == 2 else 1.0)


def last_layer_laplace(net, xtr, ytr, xte, xood, K):
    """Gaussian over the last layer (weights and bias) at the MAP: precision = GGN + tau I, with tau
    from {0.1, 1, 10, 100, 1000} by NLL on a held-out fifth of the training data; MC predictive."""
    feats = lambda x: jnp.concatenate([jax.vmap(net.features)(x), jnp.ones((x.shape[0], 1))], axis=1)
    last = net.layers[-1]
    theta = jnp.concatenate([last.weight, last.bias[:, None]], axis=1)  # (K, H+1)
    psi = feats(xtr)
    p = jax.nn.softmax(psi @ theta.T)
    lam = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)  # (n, K, K)
    ggn = jnp.einsum("ikl,ia,ib->kalb", lam, psi, psi).reshape(theta.size, theta.size)

    def predictive(tau, x, key):
        cov = jnp.linalg.inv(ggn + tau * jnp.eye(theta.size))
        draws = jax.random.multivariate_normal(key, theta.ravel(), cov, (DRAWS * 4,)).reshape(-1, *theta.shape)
        return bdl.log_predictive(jnp.einsum("na,ska->snk", feats(x), draws))

    nval = xtr.shape[0] // 5
    taus = [0.1, 1.0, 10.0, 100.0, 1000.0]
    val = [float(bdl.nll(predictive(t, xtr[:nval], jax.random.key(7)), ytr[:nval])) for t in taus]
    tau = taus[int(np.argmin(val))]
    return predictive(tau, xte, jax.random.key(8)), predictive(tau, xood, jax.random.key(8))


# ----------------------------------------------------------------------------- regression


def regression(args):
    xtr, ytr, xte, yte = diabetes()
    n, sizes, bs, wd = xtr.shape[0], (10, 50, 50, 1), 32, 1e-4
    key = jax.random.key(0)
    out = {}

    def judge(name, mean, var):
        out.update({f"reg_{name}_rmse": float(bdl.rmse(mean, yte)), f"reg_{name}_nll": float(bdl.gaussian_nll(mean, var, yte))})

    def gauss(p, x, y, key=None, rate=0.0):
        net, log_s = p
        if key is None:
            mu = jax.vmap(net)(x)[:, 0]
        else:
            mu = jax.vmap(lambda xi, ki: net(xi, ki, rate)[0])(x, jax.random.split(key, x.shape[0]))
        return -jnp.mean(dist.Normal(mu, jnp.exp(log_s)).log_prob(y))

    p0 = (MLP(sizes, key), jnp.zeros(()))
    adamw = optax.adamw(args.lr, weight_decay=wd)
    grad = lambda p, s, idx, k: jax.grad(gauss)(p, xtr[idx], ytr[idx])
    epochs = args.reg_epochs
    p, _, _, _ = train(p0, adamw, grad, key, epochs, n, bs)
    judge("adamw", jax.vmap(p[0])(xte)[:, 0], jnp.exp(2 * p[1]) * jnp.ones(xte.shape[0]))

    opt = ivon(args.ivon_lr, ess=float(n), hess_init=args.hess_init, weight_decay=wd, beta2=args.beta2)
    igrad = lambda p, s, idx, k: opt.value_and_grad(gauss)(k, p, s, xtr[idx], ytr[idx])[1]
    p, st, _, _ = train(p0, opt, igrad, key, epochs, n, bs)
    draws = jax.vmap(lambda k: ivon_sample(k, p, st))(jax.random.split(jax.random.key(1), DRAWS))
    means = jax.vmap(lambda d: jax.vmap(d[0])(xte)[:, 0])(draws)
    judge("ivon", *bdl.gaussian_predictive(means, jnp.exp(2 * draws[1])[:, None] * jnp.ones_like(means)))

    members = [train((MLP(sizes, jax.random.key(10 + m)), jnp.zeros(())), adamw, grad, jax.random.key(20 + m), epochs, n, bs)[0] for m in range(5)]
    means = jnp.stack([jax.vmap(m[0])(xte)[:, 0] for m in members])
    judge("ensemble", *bdl.gaussian_predictive(means, jnp.stack([jnp.exp(2 * m[1]) * jnp.ones(xte.shape[0]) for m in members])))

    rate = 0.1
    dgrad = lambda p, s, idx, k: jax.grad(gauss)(p, xtr[idx], ytr[idx], k, rate)
    p, _, _, _ = train(p0, adamw, dgrad, key, epochs, n, bs)
    means = jax.vmap(lambda k: jax.vmap(lambda xi, ki: p[0](xi, ki, rate)[0])(xte, jax.random.split(k, xte.shape[0])))(jax.random.split(jax.random.key(2), DRAWS))
    judge("mc_dropout", *bdl.gaussian_predictive(means, jnp.exp(2 * p[1]) * jnp.ones_like(means)))

    head = bdl.vbll.Regression(50, 1, key=jax.random.key(3), cov="dense")
    vb = (MLP(sizes, key), head)
    vloss = lambda p, x, y: p[1].loss(jax.vmap(p[0].features)(x), y, n)
    vgrad = lambda p, s, idx, k: jax.grad(vloss)(p, xtr[idx], ytr[idx])
    vb, _, _, _ = train(vb, adamw, vgrad, key, epochs, n, bs)
    mean, var = vb[1].predictive(jax.vmap(vb[0].features)(xte))
    judge("vbll", mean[:, 0], var[:, 0])
    return out


# ----------------------------------------------------------------------------- main


def plot(logp, yte, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["adamw", "ivon", "ivon_mean", "ensemble", "mc_dropout", "ll_laplace", "vbll", "bbb", "bbb_local", "bbb_cold"]
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.2), sharey=True)
    for ax, name in zip(axes, names):
        bdl.reliability_diagram(logp[name], yte, ax=ax, label=name)
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="40 epochs and 5 timing pairs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--pairs", type=int, default=None)
    p.add_argument("--reg-epochs", type=int, default=30, help="regression epochs (its networks overfit the 353 training points beyond)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ivon-lr", type=float, default=1.0)
    p.add_argument("--hess-init", type=float, default=1.0)
    p.add_argument("--beta2", type=float, default=0.99999)
    p.add_argument("--seeds", type=int, default=5,
                   help="AdamW and IVON at the chosen settings from this many initialisations and batch orders")
    p.add_argument("--no-select", dest="select", action="store_false",
                   help="use --lr, --ivon-lr and --hess-init instead of choosing them on a validation split")
    args = p.parse_args()
    args.epochs = args.epochs or (40 if args.quick else 150)
    args.pairs = args.pairs or (5 if args.quick else 30)
    t0 = time.perf_counter()
    out, logp, yte = classification(args)
    out.update(regression(args))
    RESULTS.mkdir(exist_ok=True)
    plot(logp, yte, RESULTS / "bdl_reliability.png")
    out.update(epochs=args.epochs, pairs=args.pairs, seconds=time.perf_counter() - t0,
               machine=f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}")
    names = ["adamw", "ivon", "ivon_mean", "ensemble", "mc_dropout", "ll_laplace", "vbll", "bbb", "bbb_local", "bbb_cold"]
    print(f"{'method':12s} {'acc':>6s} {'nll':>6s} {'ece':>6s} {'brier':>6s} {'auroc':>6s} {'train s':>8s}")
    for m in names:
        print(f"{m:12s} {out[m + '_acc']:6.3f} {out[m + '_nll']:6.3f} {out[m + '_ece']:6.3f} {out[m + '_brier']:6.3f} "
              f"{out[m + '_ood_auroc']:6.3f} {out.get(m + '_train_s', float('nan')):8.1f}")
    for suffix in ("", "_wide"):
        r = "ivon_over_adamw_step" + suffix
        print(f"IVON / AdamW time per step, {out[r + '_config']}: median {out[r]:.2f} "
              f"(min {out[r + '_min']:.2f}, max {out[r + '_max']:.2f}, {args.pairs} pairs)")
    how = "chosen on the validation split" if args.select else "given (--no-select)"
    print(f"settings, {how}: AdamW lr {out['adamw_lr']}, weight decay {out['adamw_weight_decay']}; IVON lr {out['ivon_lr']}, "
          f"hess_init {out['ivon_hess_init']}, weight decay {out['ivon_weight_decay']} (peak rates, cosine to 0)")
    for m in ("ivon", "ivon_mean"):
        print(f"{m} - AdamW on the test set: NLL {out[m + '_minus_adamw_nll']:+.4f} +- {out[m + '_minus_adamw_nll_se']:.4f}, "
              f"ECE {out[m + '_minus_adamw_ece']:+.4f} +- {out[m + '_minus_adamw_ece_se']:.4f}")
    if args.seeds > 1:
        for m in ("ivon", "ivon_mean"):
            print(f"over {args.seeds} seeds (initialisation and batch order): {m} - AdamW NLL "
                  f"{out[f'seeds_{m}_minus_adamw_nll_mean']:+.4f} +- {out[f'seeds_{m}_minus_adamw_nll_se']:.4f}, ECE "
                  f"{out[f'seeds_{m}_minus_adamw_ece_mean']:+.4f} +- {out[f'seeds_{m}_minus_adamw_ece_se']:.4f}")
        print("mean acc / NLL / ECE over seeds: " + "; ".join(
            f"{m} {out[f'seeds_{m}_acc_mean']:.3f} / {out[f'seeds_{m}_nll_mean']:.3f} / {out[f'seeds_{m}_ece_mean']:.3f}" for m in ("adamw", "ivon", "ivon_mean")))
    for m in ["adamw", "ivon", "ensemble", "mc_dropout", "vbll"]:
        print(f"regression {m:12s} rmse {out['reg_' + m + '_rmse']:.3f} nll {out['reg_' + m + '_nll']:.3f}")
    if args.json:
        (RESULTS / "bdl.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())

"""Particle VI: provi's SVGD (scalar RBF and the matrix-valued kernel preconditioned by the mode's
Hessian) against NumPyro's `contrib.einstein.SVGD` and BlackJAX's `vi.svgd`, in one process.

    python benchmarks/particles.py [--quick] [--json PATH]

Cases, each with 100 particles, Adam, an RBF kernel with the median heuristic and the same number
of steps for every method:
(a) a 2-d mixture of four Gaussians (weights 0.1, 0.2, 0.3, 0.4; centres at (+-1.5, +-1.5), sd
    0.6): the largest error of a mode's weight, particles assigned to their nearest centre;
(b) Bayesian logistic regression, D = 20, N = 500 (synthetic): mean over coordinates of the mean's
    error and of the sd's relative error, in posterior sds, against NUTS (4,000 draws);
(c) a Bayesian MLP 10-16-1 (tanh, N(0, 1) weights, learned noise) on scikit-learn's diabetes data
    (342 train / 100 test, standardised): test RMSE and the predictive NLL of the particles' mixture.

BlackJAX is given provi's initial particles (in the model's unconstrained space, with provi's
`init="zero"` start, so both move the same points in the same coordinates); NumPyro's SVGD
initialises its own (`init_to_uniform` with radius 2, its default). Time per step: each method's
steps run in one jitted `lax.scan`; the cost per step is (long run - short run) / (steps
difference), the three methods alternated in rounds; the median and range over rounds are
reported. The matrix kernel: plain SGD (each kernel at its best step size of a grid) from provi's
Laplace start, the IMQ Stein discrepancy after 30 ... 3,000 steps, and the steps the kernel
preconditioned by the mode's Hessian needs to reach scalar SVGD's final discrepancy, on a 5-d
Gaussian with condition number 1,000 and on a logistic regression with strongly correlated
features. (With Adam, whose per-coordinate scaling preconditions scalar SVGD too, the gap is
smaller; the accuracy cases above use Adam for every method.) `--curvature` runs only the
comparison of the matrix kernel's curvature estimates (`by="mode" | "hessian" | "fisher"`, each
step's or a running average) on those two posteriors, from the Laplace start and from N(0, I)
with no mode: moment errors along the way, steps to the scalar kernel's final error, step cost.
Many particles: provi's exact RBF
kernel against `RandomFeatures(256)` (random Fourier features, O(n R D) per step) on (b) with 400,
2,000 and 8,000 particles: step cost and moment error.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model, unconstrain_fn

import provi
from provi.guides import Particles
from provi.kernels import RBF, Preconditioned, RandomFeatures

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

N_PARTICLES = 100
LR = 0.05
WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
CENTRES = np.array([[-1.5, -1.5], [-1.5, 1.5], [1.5, -1.5], [1.5, 1.5]])


def mixture():
    mix = dist.MixtureSameFamily(dist.Categorical(jnp.asarray(WEIGHTS)),
                                 dist.MultivariateNormal(jnp.asarray(CENTRES), 0.36 * jnp.eye(2)))
    numpyro.sample("x", mix)


def logreg(X, y):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("n", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)


def logreg_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 20)).astype(np.float32)
    w = rng.normal(size=20) * 0.5
    y = (rng.random(500) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


H = 16


def correlated_logreg_data():
    """Logistic regression whose features are strongly correlated (an ill-conditioned posterior)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 1))
    X = (0.95 * z + 0.3 * rng.normal(size=(500, 10))).astype(np.float32)
    w = rng.normal(size=10) * 0.5
    y = (rng.random(500) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


def bnn(X, y=None):
    w1 = numpyro.sample("w1", dist.Normal(0, 1).expand([X.shape[1], H]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0, 1).expand([H]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0, 1).expand([H]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0))
    mean = jnp.tanh(X @ w1 + b1) @ w2 + b2
    with numpyro.plate("n", X.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:342], perm[342:]
    f = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return (f(X[tr]), f(y[tr])), (f(X[te]), f(y[te]))


def ill_gaussian():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))
    cov = q @ np.diag(np.logspace(-1.5, 1.5, 5)) @ q.T

    def model():
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(5), jnp.asarray(cov, jnp.float32)))

    return model, cov


# ---------------------------------------------------------------------------------------------
# the three implementations, each as `(run(n_steps) -> final unconstrained particles (N, D))`


def provi_runner(model, args, kernel, init="zero", lr=LR, spread=None, n=N_PARTICLES):
    spread = (1.0 if init == "map" else 10.0) if spread is None else spread
    alg = provi.setup(model, *args, guide=Particles(n, spread=spread), objective=provi.SVGD(kernel=kernel),
                      optimizer=optax.adam(lr), init=init)
    state0 = alg.init(jax.random.PRNGKey(0))

    @jax.jit
    def scan(state, keys):
        return jax.lax.scan(lambda s, k: (alg.step(s, k)[0], None), state, keys)[0]

    def u_of(state):
        # provi's flat order is the model's site order; NumPyro's potential ravels sites sorted by
        # name: go through the constrained values so every method's particles read alike
        values, _ = alg.guide.place(state.consts, state.params["guide"]["particles"])
        return flat_unconstrained(model, args, values)

    def run(n):
        return u_of(scan(state0, jax.random.split(jax.random.PRNGKey(1), n)))

    return run, u_of(state0)


def flat_unconstrained(model, args, values):
    """Particles (N, D) in the unconstrained space, sites in NumPyro's ravel order, from
    constrained values {site: (N, ...)}."""
    unc = jax.vmap(lambda v: unconstrain_fn(model, args, {}, v))(values)
    return jax.vmap(lambda v: jax.flatten_util.ravel_pytree(v)[0])(unc)


def potential(model, args):
    info = initialize_model(jax.random.PRNGKey(0), model, model_args=args)
    flat, unravel = jax.flatten_util.ravel_pytree(info.param_info.z)
    return lambda u: -info.potential_fn(unravel(u)), unravel


def blackjax_runner(model, args, init_particles, lr=LR):
    import blackjax

    logp, _ = potential(model, args)
    svgd = blackjax.svgd(jax.grad(logp), optax.adam(lr), blackjax.vi.svgd.rbf_kernel, blackjax.vi.svgd.update_median_heuristic)
    state0 = svgd.init(init_particles)

    @jax.jit
    def scan(state, n_dummy):
        return jax.lax.scan(lambda s, _: (svgd.step(s), None), state, n_dummy)[0]

    return lambda n: scan(state0, jnp.zeros((n,))).particles


def numpyro_runner(model, args, lr=LR):
    from numpyro.contrib.einstein import SVGD, RBFKernel

    svgd = SVGD(model, numpyro.optim.Adam(lr), RBFKernel(), num_stein_particles=N_PARTICLES)
    state0 = svgd.init(jax.random.PRNGKey(0), *args)

    @jax.jit
    def scan(state, n_dummy):
        return jax.lax.scan(lambda s, _: (svgd.update(s, *args)[0], None), state, n_dummy)[0]

    def run(n):
        params = svgd.get_params(scan(state0, jnp.zeros((n,))))
        sites = {k[: -len("_auto_loc")]: v for k, v in params.items() if k.endswith("_auto_loc")}
        return flat_unconstrained(model, args, sites)

    return run


# ---------------------------------------------------------------------------------------------
# accuracy


def weight_error(u):
    u = np.asarray(u)
    nearest = np.argmin(((u[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1)
    return float(np.max(np.abs(np.bincount(nearest, minlength=4) / len(u) - WEIGHTS)))


def nuts_reference(model, args, draws=4000):
    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=draws, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *args)
    w = np.asarray(mcmc.get_samples()["w"])
    return w.mean(0), w.std(0)


def moment_error(u, ref):
    u = np.asarray(u)
    m, s = ref
    return float(np.mean(np.abs(u.mean(0) - m) / s)), float(np.mean(np.abs(u.std(0) / s - 1)))


def bnn_scores(u, test, unravel):
    X, y = test
    preds, sigmas = [], []
    for row in np.asarray(u):
        p = unravel(jnp.asarray(row))
        mean = jnp.tanh(X @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        preds.append(np.asarray(mean))
        sigmas.append(float(np.exp(p["sigma"])))  # unconstrained: log sigma
    preds, sigmas = np.stack(preds), np.asarray(sigmas)[:, None]
    rmse = float(np.sqrt(np.mean((preds.mean(0) - np.asarray(y)) ** 2)))
    logpdf = -0.5 * ((np.asarray(y)[None] - preds) / sigmas) ** 2 - np.log(sigmas) - 0.5 * np.log(2 * np.pi)
    nll = float(-np.mean(np.logaddexp.reduce(logpdf, 0) - np.log(len(preds))))
    return rmse, nll


# ---------------------------------------------------------------------------------------------
# timing


def step_costs(runners: dict, n_long, n_short, rounds):
    for run in runners.values():
        run(n_short), run(n_long)  # compile both lengths
    costs = {k: [] for k in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            t_long = min(timed(lambda: run(n_long))[0] for _ in range(2))
            t_short = min(timed(lambda: run(n_short))[0] for _ in range(2))
            costs[name].append((t_long - t_short) / (n_long - n_short))
    return {k: dict(median_ms=1e3 * statistics.median(v), min_ms=1e3 * min(v), max_ms=1e3 * max(v)) for k, v in costs.items()}


def sgd_states(model, args, kernel, lr, checks, init="map", spread=3.0):
    """`(alg, scan, states)`: SVGD with plain SGD from provi's start `init` (the particles spread
    `spread` times wider than it), `states` after each step count in `checks`, and the jitted
    `scan(state, keys)` that ran them."""
    alg = provi.setup(model, *args, guide=Particles(N_PARTICLES, spread=spread), objective=provi.SVGD(kernel=kernel),
                      optimizer=optax.sgd(lr), init=init)
    state = alg.init(jax.random.PRNGKey(0))
    scan = jax.jit(lambda s, keys: jax.lax.scan(lambda c, k: (alg.step(c, k)[0], None), s, keys)[0])
    states, done = [], 0
    for n in checks:
        state = scan(state, jax.random.split(jax.random.PRNGKey(n), n - done))
        done = n
        states.append(state)
    return alg, scan, states


def ksd_trajectory(model, args, kernel, lr, checks):
    """The IMQ Stein discrepancy (provi's particle diagnostics) after each step count in `checks`,
    plain SGD from provi's Laplace start (the particles spread 3 times wider than it)."""
    alg, _, states = sgd_states(model, args, kernel, lr, checks)
    ksds = [provi.FitResult.from_state(alg, state).diagnostics().particles.ksd for state in states]
    return [float(k) if np.isfinite(k) else float("inf") for k in ksds]


def matrix_speedup(model, args, checks):
    """Scalar SVGD at its best SGD step size of a grid against the matrix kernel (mode's Hessian)
    at its best: the KSD of each after every check, and the steps the matrix kernel needs to reach
    the scalar kernel's final KSD."""
    best = lambda runs: min(runs.items(), key=lambda kv: kv[1][-1])  # noqa: E731
    scalar = best({lr: ksd_trajectory(model, args, RBF(), lr, checks) for lr in (0.01, 0.03, 0.1, 0.3)})
    matrix = best({lr: ksd_trajectory(model, args, Preconditioned(RBF(), by="mode"), lr, checks) for lr in (0.1, 0.3, 1.0)})
    reach = next((n for n, k in zip(checks, matrix[1]) if k <= scalar[1][-1]), None)
    return {"checks": checks, "scalar_lr": scalar[0], "scalar_ksd": scalar[1], "matrix_lr": matrix[0],
            "matrix_ksd": matrix[1], "matrix_steps_to_scalar_final": reach}


CURVATURE_KERNELS = {
    "scalar": RBF(),
    "mode": Preconditioned(RBF(), by="mode"),
    "hessian": Preconditioned(RBF(), by="hessian"),
    "hessian_subset10_decay0.9": Preconditioned(RBF(), by="hessian", subset=10, decay=0.9),
    "fisher": Preconditioned(RBF(), by="fisher"),
    "fisher_decay0.9": Preconditioned(RBF(), by="fisher", decay=0.9),
}


def moment_trajectory(model, args, site, ref, kernel, lr, checks, init):
    """(mean error, sd error) in posterior sds (`moment_error`) of the particles' site `site`
    after each step count in `checks`, plain SGD; `init="map"`: from provi's Laplace start with
    the particles spread 3 times wider, `init="standard"`: from N(0, I) in the model's
    unconstrained space (no mode, no whitening)."""
    alg, scan, states = sgd_states(model, args, kernel, lr, checks, init, 3.0 if init == "map" else 1.0)
    out = []
    for state in states:
        draws = np.asarray(provi.FitResult.from_state(alg, state).sample(N_PARTICLES)[site])
        out.append(moment_error(draws, ref) if np.all(np.isfinite(draws)) else (float("inf"), float("inf")))
    return out, scan, states[-1]


def curvature_kernels(quick):
    """#17: the matrix-valued kernel's curvature estimates (the mode's Hessian, the particles' mean
    Hessian, the score outer products; each step's or a running average) against the scalar
    kernel, from provi's Laplace start and from a start with no mode; each kernel's errors at every
    SGD step size of a grid, its best by the final mean + sd error, and the fewest steps (over the
    grid) it needs to reach the scalar kernel's best final error; the step cost on the logistic
    regression, alternated in rounds."""
    checks = [30, 100, 300] if quick else [30, 100, 300, 1000, 3000]
    gauss, cov = ill_gaussian()
    draws = np.random.default_rng(0).multivariate_normal(np.zeros(5), cov, 200_000)
    data = correlated_logreg_data()
    cases = {"ill_gaussian_5d": (gauss, (), "x", (draws.mean(0), draws.std(0))),
             "logreg_correlated_10d": (logreg, data, "w", nuts_reference(logreg, data, 1000 if quick else 4000))}
    out = {"checks": checks}
    for case, (model, args, site, ref) in cases.items():
        for init in ("map", "standard"):
            rows = {}
            for name, kernel in CURVATURE_KERNELS.items():
                if init != "map" and name == "mode":  # refused: without a mode it would be the scalar kernel
                    continue
                runs = {lr: moment_trajectory(model, args, site, ref, kernel, lr, checks, init)[0] for lr in (0.03, 0.1, 0.3, 1.0)}
                lr, traj = min(runs.items(), key=lambda kv: sum(kv[1][-1]))
                rows[name] = {"lr": lr, "errors": traj, "errors_by_lr": {str(k): v for k, v in runs.items()}}
            target = sum(rows["scalar"]["errors"][-1])  # the scalar kernel's final error at its best step size
            for row in rows.values():  # the fewest steps, over the step sizes, to reach it
                reach = [next((n for n, e in zip(checks, traj) if sum(e) <= target), None) for traj in row["errors_by_lr"].values()]
                row["steps_to_scalar_final"] = min((n for n in reach if n is not None), default=None)
            out[f"{case}_{init}"] = rows
            print("curvature", case, init, json.dumps(rows), flush=True)
    runs = {}
    for name, kernel in CURVATURE_KERNELS.items():
        _, scan, state = moment_trajectory(logreg, data, "w", cases["logreg_correlated_10d"][3], kernel, 0.1, [1], "map")
        runs[name] = (lambda scan, state: lambda n: jax.block_until_ready(scan(state, jax.random.split(jax.random.PRNGKey(2), n))))(scan, state)
    out["step_ms_logreg_correlated"] = step_costs(runs, 400 if quick else 1000, 100 if quick else 200, 2 if quick else 5)
    print("curvature step ms", out["step_ms_logreg_correlated"], flush=True)
    return out


def many_particles(data, ref, sizes, steps, rounds):
    """Exact RBF against `RandomFeatures(256)` as the number of particles grows, on the logistic
    regression: step cost (alternating rounds) and, up to 2,000 particles, the moment error after
    `steps`."""
    out = {}
    for n in sizes:
        runs = {name: provi_runner(logreg, data, kernel, n=n)[0] for name, kernel in
                (("rbf", RBF()), ("random_features_256", RandomFeatures(256)))}
        long, short = (60, 20) if n <= 2000 else (8, 3)  # the exact kernel's steps take seconds beyond
        out[n] = {"step_ms": step_costs(runs, long, short, rounds)}
        if n <= 2000:  # the exact kernel's O(n^2) steps make a long run too slow beyond
            out[n]["mean_sd_error"] = {name: moment_error(run(steps), ref) for name, run in runs.items()}
        print("many particles", n, out[n], flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--curvature", action="store_true", help="only the matrix kernel's curvature estimates (#17)")
    a = ap.parse_args()
    if a.curvature:
        out = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__, "particles": N_PARTICLES,
               **curvature_kernels(a.quick)}
        if a.json:
            Path(a.json).write_text(json.dumps(out) + "\n")
        return
    steps = 300 if a.quick else 2000
    out = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__, "numpyro": numpyro.__version__,
           "particles": N_PARTICLES, "steps": steps, "lr": LR}
    t0 = time.time()

    # (a) mixture
    run_s, init = provi_runner(mixture, (), RBF())
    run_m, _ = provi_runner(mixture, (), Preconditioned(RBF(), by="mode"), init="map", spread=3.0)
    res = {"provi_scalar": weight_error(run_s(steps)), "provi_matrix": weight_error(run_m(steps)),
           "blackjax": weight_error(blackjax_runner(mixture, (), init)(steps)),
           "numpyro": weight_error(numpyro_runner(mixture, ())(steps))}
    out["mixture_weight_error"] = res
    print("mixture weight error", res, flush=True)

    # (b) logistic regression
    data = logreg_data()
    ref = nuts_reference(logreg, data, 1000 if a.quick else 4000)
    run_s, init = provi_runner(logreg, data, RBF())
    run_m, _ = provi_runner(logreg, data, Preconditioned(RBF(), by="mode"), init="map")
    run_b, run_n = blackjax_runner(logreg, data, init), numpyro_runner(logreg, data)
    res = {"provi_scalar": moment_error(run_s(steps), ref), "provi_matrix": moment_error(run_m(steps), ref),
           "blackjax": moment_error(run_b(steps), ref), "numpyro": moment_error(run_n(steps), ref)}
    out["logreg_mean_sd_error"] = res
    print("logreg (mean error, sd error) in posterior sds", res, flush=True)
    out["step_ms_logreg"] = step_costs({"provi": run_s, "blackjax": run_b, "numpyro": run_n}, 200 if a.quick else 500,
                                       50 if a.quick else 100, 3 if a.quick else 7)
    print("logreg: step ms", out["step_ms_logreg"], flush=True)

    out["many_particles_logreg"] = many_particles(data, ref, [400, 2000] if a.quick else [400, 2000, 8000], steps,
                                                  2 if a.quick else 3)

    # the matrix-valued kernel against the scalar one, plain SGD, KSD along the way
    checks = [30, 100, 300, 1000, 3000] if not a.quick else [30, 100, 300]
    model, _ = ill_gaussian()
    out["matrix_vs_scalar_ill_gaussian"] = matrix_speedup(model, (), checks)
    out["matrix_vs_scalar_logreg_correlated"] = matrix_speedup(logreg, correlated_logreg_data(), checks)
    print("matrix vs scalar", out["matrix_vs_scalar_ill_gaussian"], out["matrix_vs_scalar_logreg_correlated"], flush=True)

    # (c) BNN regression
    train, test = diabetes()
    _, unravel = potential(bnn, train)
    run_s, init = provi_runner(bnn, train, RBF())
    res = {"provi_scalar": bnn_scores(run_s(steps), test, unravel),
           "blackjax": bnn_scores(blackjax_runner(bnn, train, init)(steps), test, unravel)}
    try:
        res["numpyro"] = bnn_scores(numpyro_runner(bnn, train)(steps), test, unravel)
    except Exception as e:  # report, do not hide
        res["numpyro"] = f"failed: {type(e).__name__}: {e}"[:200]
    out["bnn_rmse_nll"] = res
    print("BNN (test RMSE, NLL)", res, flush=True)
    out["seconds"] = time.time() - t0
    line = json.dumps(out)
    if a.json:
        Path(a.json).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()

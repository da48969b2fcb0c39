"""Forward-backward Gaussian VI (provi.optim.fb_gvi), Bures-Wasserstein SGD and natural-gradient VI (natgrad) against Adam on
the full-rank Gaussian ELBO: iterations and seconds to reach KL 0.01 from the converged optimum.

    python benchmarks/wasserstein.py [--quick] [--json PATH]

Cases: Bayesian logistic regression (D = 20, N = 500, synthetic) and the posteriordb regressions
shipped with provi (sblrc-blr, kidiq-kidscore_interaction, earnings-logearn_interaction_z).
Every run starts from provi's Laplace start (init="map": the same mode and whitening for all),
uses the ELBO with 16 particles (the `_price` rows: `provi.PriceELBO(num_particles=16)`, the
same ELBO with Hessians at the draws for the scale's gradient, in antithetic pairs), and is run with the step API (`provi.setup`) so that the KL is
read along one trajectory: KL(q_t || q*) between Gaussians in the whitened space (exact, no
sampling; KL is invariant under the shared whitening and constraining maps), where q* is Adam
(3e-3) after 20,000 steps. Every figure, the reference's included, is a Polyak average: the
parameters averaged over the second half of the steps taken (as `provi.fit` averages), since a
stochastic iterate's own noise keeps it at a KL floor that depends on the step size. Each optimiser's step size is the best of a small grid, chosen per
case (reported). `reference_check_kl` is the KL between the reference and a second route to
the same optimum (FB-GVI on PriceELBO with a decreasing step, a fifth as many steps): the
reference's own error. `below_0_01_from` is the first check after which every check is below 0.01.
BlackJAX's `fullrank_vi` (Adam on its own mean and Cholesky parameters, 16
draws per step) runs on the same target function (provi's log density in the unconstrained
space) from the same mode with its only start, the identity covariance, with the same Polyak
averaging; its KL is taken in the unconstrained space, against the reference mapped there.
BlackJAX is optional: its rows are left out where it is not installed.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

import provi
from provi.engine.start import log_density_u
from provi.examples import posteriordb

REPO = Path(__file__).resolve().parent.parent
CHECKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def logreg_case():
    rng = np.random.default_rng(0)
    N, D = 500, 20
    X = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=D) * 0.5
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)

    def logreg(X, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("n", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

    return logreg, (jnp.asarray(X), jnp.asarray(y))


def cases(quick):
    out = {"logreg_d20": logreg_case()}
    names = ["sblrc-blr"] if quick else ["sblrc-blr", "kidiq-kidscore_interaction", "earnings-logearn_interaction_z"]
    for name in names:
        p = posteriordb.load(name)
        out[name] = (p.model, p.args)
    return out


def moments(params):
    g = params["guide"]
    L = jnp.tril(g["scale_tril"], -1) + jnp.diag(jnp.exp(jnp.diag(g["scale_tril"])))
    return np.asarray(g["loc"], np.float64), np.asarray(L @ L.T, np.float64)


def kl(m0, S0, m1, S1):
    S1i = np.linalg.inv(S1)
    sign0, ld0 = np.linalg.slogdet(S0)
    sign1, ld1 = np.linalg.slogdet(S1)
    return 0.5 * (np.trace(S1i @ S0) + (m1 - m0) @ S1i @ (m1 - m0) - len(m0) + ld1 - ld0)


def trajectory(model, args, optimizer, checks, seed=0, objective=None):
    """Polyak-averaged moments at each step count n in `checks` (the parameters averaged over
    steps n/2 to n, as provi.fit's `average=True` does), seconds per step, and the whitening shift."""
    objective = provi.ELBO(num_particles=16) if objective is None else objective
    alg = provi.setup(model, *args, guide="fullrank", optimizer=optimizer, objective=objective)
    state = alg.init(jax.random.PRNGKey(seed))

    def body(s, key):
        s, _ = alg.step(s, key)
        return s, s.params["guide"]

    n = max(checks)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), n)
    compiled = jax.jit(lambda s, k: jax.lax.scan(body, s, k)).lower(state, keys).compile()
    t0 = time.perf_counter()
    final, history = jax.block_until_ready(compiled(state, keys))
    per_step = (time.perf_counter() - t0) / n
    out = {}
    for c in checks:
        avg = jax.tree.map(lambda h: jnp.mean(h[c // 2:c], axis=0), history)
        out[c] = moments({"guide": avg})
    shift = np.asarray(final.consts["shift"]) if "shift" in final.consts else None
    return out, per_step, shift


def blackjax_trajectory(model, args, lr, checks, seed=0):
    """BlackJAX fullrank_vi from the mode provi's start finds: Polyak-averaged moments in the
    unconstrained space at each of `checks`, seconds per step, and provi's (shift, P)."""
    import blackjax
    from blackjax.vi.fullrank_vi import _unflatten_cholesky

    alg = provi.setup(model, *args, guide="fullrank")
    state = alg.init(jax.random.PRNGKey(seed))
    f = log_density_u(alg.model, alg.guide.space, alg.layout)
    logdensity = lambda u: f(u, state.params["model"], alg.data)  # noqa: E731
    vi = blackjax.fullrank_vi(logdensity, optax.adam(lr), num_samples=16)
    s0 = vi.init(jnp.asarray(state.consts["shift"]))
    d = s0.mu.shape[0]

    def body(s, key):
        s, _ = vi.step(key, s)
        return s, (s.mu, s.chol_params)

    n = max(checks)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), n)
    compiled = jax.jit(lambda s, k: jax.lax.scan(body, s, k)).lower(s0, keys).compile()
    t0 = time.perf_counter()
    _, (mus, chols) = jax.block_until_ready(compiled(s0, keys))
    per_step = (time.perf_counter() - t0) / n
    out = {}
    for c in checks:
        L = _unflatten_cholesky(jnp.mean(chols[c // 2:c], 0), d)
        out[c] = np.asarray(jnp.mean(mus[c // 2:c], 0), np.float64), np.asarray(L @ L.T, np.float64)
    return out, per_step, (np.asarray(state.consts["shift"], np.float64), np.asarray(state.consts["P"], np.float64))


def score(best, name, h, traj, per_step, checks, m_ref, S_ref):
    """The KL to the reference at each check of one run, its steps to KL 0.01, and the better of it
    and `best` (fewer steps, then the lower KL) as `(key, row)`."""
    kls = {n: float(kl(*traj[n], m_ref, S_ref)) for n in checks}
    kls = {n: (v if np.isfinite(v) else float("inf")) for n, v in kls.items()}
    reach = next((n for n in checks if kls[n] < 0.01), None)
    stays = next((n for i, n in enumerate(checks) if all(kls[m] < 0.01 for m in checks[i:])), None)
    row = dict(step_size=h, kl=kls, steps_to_kl_0_01=reach, below_0_01_from=stays, seconds_per_step=per_step,
               seconds_to_kl_0_01=None if reach is None else reach * per_step)
    key = (reach if reach is not None else 10**9, min(kls.values()))
    print(f"  {name} {h}: reach {reach}, final KL {kls[checks[-1]]:.4f}", file=sys.stderr, flush=True)
    return (key, row) if best is None or key < best[0] else best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "wasserstein.json"))
    a = p.parse_args(argv)
    ref_steps = 5_000 if a.quick else 20_000
    checks = CHECKS[:-2] if a.quick else CHECKS
    grids = {
        "fb_gvi": [0.05, 0.1, 0.2, 0.5],
        "bw_sgd": [0.05, 0.1, 0.2, 0.5],
        "adam": [1e-3, 3e-3, 1e-2, 3e-2],
        "adam_stl": [1e-3, 3e-3, 1e-2, 3e-2],
        "fb_gvi_price": [0.1, 0.2, 0.5, 1.0],
        "bw_sgd_price": [0.1, 0.2, 0.5, 1.0],
        "adam_price": [1e-3, 3e-3, 1e-2, 3e-2],
        "natgrad": [0.05, 0.1, 0.2, 0.5],
        "natgrad_price": [0.1, 0.2, 0.5, 1.0],
    }
    makers = {"fb_gvi": provi.optim.fb_gvi, "bw_sgd": provi.optim.bw_sgd, "adam": optax.adam, "adam_stl": optax.adam,
              "fb_gvi_price": provi.optim.fb_gvi, "bw_sgd_price": provi.optim.bw_sgd, "adam_price": optax.adam,
              "natgrad": provi.optim.natgrad, "natgrad_price": provi.optim.natgrad}
    price = provi.PriceELBO(num_particles=16)  # Hessians at the draws (Price's theorem), antithetic pairs
    objectives = {"adam_stl": provi.STL(num_particles=16),  # the path-derivative gradient BlackJAX's fullrank_vi uses
                  "fb_gvi_price": price, "bw_sgd_price": price, "adam_price": price, "natgrad_price": price}
    results = dict(machine=dict(platform=platform.platform(), python=platform.python_version(), jax=jax.__version__),
                   quick=a.quick, checks=list(checks), cases={})
    for case, (model, args) in cases(a.quick).items():
        print(f"{case}: reference ...", file=sys.stderr, flush=True)
        ref, _, ref_shift = trajectory(model, args, optax.adam(3e-3), (ref_steps,))
        m_ref, S_ref = ref[ref_steps]
        # the reference's own error: a second, independent route to the same optimum
        check, _, _ = trajectory(model, args, provi.optim.fb_gvi(lambda t: 0.5 / (1.0 + t / 200.0)), (ref_steps // 5,),
                                 objective=provi.PriceELBO(num_particles=16))
        entry = {"dim": int(len(m_ref)), "reference_check_kl": float(kl(*check[ref_steps // 5], m_ref, S_ref))}
        for name, grid in grids.items():
            best = None
            for h in grid:
                traj, per_step, shift = trajectory(model, args, makers[name](h), checks, objective=objectives.get(name))
                if ref_shift is not None and shift is not None:
                    assert np.allclose(shift, ref_shift), "different whitening: KL in the whitened space would not compare"
                best = score(best, name, h, traj, per_step, checks, m_ref, S_ref)
            entry[name] = best[1]
        try:
            import blackjax  # noqa: F401
        except ImportError:
            blackjax = None
        if blackjax is not None:
            best = None
            for h in grids["adam"]:
                traj, per_step, (shift, P) = blackjax_trajectory(model, args, h, checks)
                # the reference mapped to the unconstrained space, where BlackJAX's moments live
                best = score(best, "blackjax_fullrank_vi", h, traj, per_step, checks, shift + P @ m_ref, P @ S_ref @ P.T)
            entry["blackjax_fullrank_vi"] = best[1]
        results["cases"][case] = entry
    names = list(grids) + (["blackjax_fullrank_vi"] if any("blackjax_fullrank_vi" in e for e in results["cases"].values()) else [])
    print(f"{'case':32s} {'dim':>4s} " + " ".join(f"{n:>22s}" for n in names))
    for case, e in results["cases"].items():
        cells = []
        for n in names:
            r = e[n]
            cells.append(f"{str(r['steps_to_kl_0_01']):>6s} it (h={r['step_size']:g}) {1e3 * r['seconds_per_step']:.2f}ms")
        print(f"{case:32s} {e['dim']:4d} " + " ".join(f"{c:>22s}" for c in cells))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1))
    print(json.dumps({c: {n: e[n]["steps_to_kl_0_01"] for n in names if n in e} for c, e in results["cases"].items()}))


if __name__ == "__main__":
    main()

"""Accuracy against gold-standard posteriors: provi's families and NumPyro's autoguides, side by side.

For each posterior in shared/posteriordb (`provi.examples.posteriordb`) and each method: the worst
|mean error| over the reference's quantities in reference sd units, the range of sd ratios, the
mean 90% interval coverage (the share of reference draws inside the method's 5%-95% interval;
0.90 is right), the Pareto k-hat of the approximation's importance weights, and wall time.

provi "auto" is scored on what `res.summary()` reports (PSIS-corrected moments and quantiles of
16,000 draws where the pipeline advises them); the other methods on 4,000 plain draws. NumPyro's AutoNormal and
AutoMultivariateNormal run Adam(1e-2) for 20,000 steps (NumPyro's SVI, one particle).

    python benchmarks/posteriordb.py [--quick] [--only NAME,...] [--methods auto,fullrank,...] [--write]

`--write` replaces the posteriordb section of benchmarks/RESULTS.md. Timings include compilation.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import provi
from provi.diagnostics import psis, weighted_moments
from provi.examples import posteriordb as pdb

METHODS = ("auto", "fullrank", "meanfield", "numpyro-AutoNormal", "numpyro-AutoMVN")
DRAWS = 4000
PSIS_DRAWS = 16_000  # as res.summary() uses for PSIS-corrected moments
SECTION = "## Accuracy on posteriordb"


def score(post, quantities: dict, log_w=None) -> dict:
    """Worst |mean err| (reference sd units), sd ratio range and mean 90% coverage of weighted draws."""
    ref = post.reference_draws()
    n = len(next(iter(quantities.values())))
    lw = np.zeros(n) if log_w is None else np.asarray(log_w, np.float64)
    errs, ratios, cover = [], [], []
    for name, r in ref.items():
        m = weighted_moments(quantities[name], lw)
        errs.append(abs(m["mean"] - r.mean()) / r.std())
        ratios.append(m["sd"] / r.std())
        cover.append(np.mean((r >= m["5%"]) & (r <= m["95%"])))
    return {"err": max(errs), "sd_lo": min(ratios), "sd_hi": max(ratios), "cover": float(np.mean(cover))}


def run_provi(post, guide: str, seed: int, steps=None) -> dict:
    t = time.perf_counter()
    res = provi.fit(post.model, *post.args, guide=guide, progress=False, seed=seed, steps=steps, **post.kwargs)
    z, log_q = res.draws(PSIS_DRAWS if res.correct == "psis" else DRAWS, seed + 100)
    jax.block_until_ready(z)
    seconds = time.perf_counter() - t
    lw_raw = np.asarray(res.log_weights(z, log_q), np.float64)
    lw, k = psis(lw_raw) if np.all(np.isfinite(lw_raw)) else (None, float("inf"))
    q = post.quantities(res._with_deterministic(z))
    use = lw if (res.correct == "psis" and lw is not None) else None
    out = score(post, q, use)
    note = res.stop.notes[-1] if (guide == "auto" and res.stop.notes) else ""
    return {**out, "khat": k, "seconds": seconds, "steps": res.stop.steps, "corrected": use is not None, "note": note}


def run_numpyro(post, kind: str, seed: int, steps: int) -> dict:
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from numpyro.infer.util import initialize_model

    t = time.perf_counter()
    guide = (AutoNormal if kind == "AutoNormal" else AutoMultivariateNormal)(post.model)
    svi = SVI(post.model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(seed), steps, *post.args, progress_bar=False, **post.kwargs)
    params = result.params
    # the approximation as a normal over the flat unconstrained vector, in NumPyro's site order
    info = initialize_model(jax.random.PRNGKey(0), post.model, model_args=post.args, model_kwargs=post.kwargs)
    proto = info.param_info.z
    flat0, unravel = jax.flatten_util.ravel_pytree(proto)
    if kind == "AutoNormal":
        loc = jax.flatten_util.ravel_pytree({k: params[f"{k}_auto_loc"] for k in proto})[0]
        scale = jax.flatten_util.ravel_pytree({k: params[f"{k}_auto_scale"] for k in proto})[0]
        tril = jnp.diag(scale)
    else:
        post_mvn = guide.get_posterior(params)
        loc, tril = post_mvn.loc, post_mvn.scale_tril
        # AutoContinuous ravels sites in its own order; map it to ours through the unpacked dict
        loc = jax.flatten_util.ravel_pytree(guide._unpack_latent(loc))[0]
        perm = jax.vmap(lambda e: jax.flatten_util.ravel_pytree(guide._unpack_latent(e))[0])(jnp.eye(loc.shape[0]))
        tril = perm.T @ tril
    eps = jax.random.normal(jax.random.PRNGKey(seed + 100), (DRAWS, loc.shape[0]))
    u = loc + eps @ tril.T
    jax.block_until_ready(u)
    seconds = time.perf_counter() - t
    cov = tril @ tril.T
    log_q = jax.scipy.stats.multivariate_normal.logpdf(u, loc, cov)
    log_p = -jax.vmap(lambda x: info.potential_fn(unravel(x)))(u)
    lw_raw = np.asarray(log_p - log_q, np.float64)
    k = psis(lw_raw)[1] if np.all(np.isfinite(lw_raw)) else float("inf")
    z = jax.vmap(lambda x: info.postprocess_fn(unravel(x)))(u)
    q = post.quantities({k_: np.asarray(v) for k_, v in z.items()})
    return {**score(post, q), "khat": k, "seconds": seconds, "steps": steps, "corrected": False, "note": ""}


def run(names, methods, quick: bool, seed: int = 0) -> dict:
    rows = {}
    for name in names:
        post = pdb.load(name)
        for method in methods:
            if method.startswith("numpyro-"):
                r = run_numpyro(post, method.split("-", 1)[1].replace("AutoMVN", "AutoMultivariateNormal"), seed, 2000 if quick else 20_000)
            else:
                r = run_provi(post, method, seed, steps=500 if quick else None)
            rows[(name, method)] = r
            print(f"{name:42s} {method:20s} {_fmt(r)}", flush=True)
    return rows


def _fmt(r) -> str:
    return (
        f"err {r['err']:6.3f}  sd [{r['sd_lo']:.2f}, {r['sd_hi']:.2f}]  cover {r['cover']:.2f}  "
        f"k-hat {r['khat']:5.2f}  {r['seconds']:6.1f} s"
    )


def table(rows: dict) -> str:
    lines = [
        "| posterior | method | worst mean err (sd) | sd ratio | 90% coverage | k-hat | time (s) | passes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, method), r in rows.items():
        ok = r["err"] <= 0.1 and 0.9 <= r["sd_lo"] and r["sd_hi"] <= 1.1
        lab = method + (" (PSIS)" if r["corrected"] else "")
        lines.append(
            f"| {name} | {lab} | {r['err']:.3f} | {r['sd_lo']:.2f} - {r['sd_hi']:.2f} | {r['cover']:.2f} | "
            f"{r['khat']:.2f} | {r['seconds']:.1f} | {'yes' if ok else 'no'} |"
        )
    return "\n".join(lines)


def write_results(md: str, path=pathlib.Path(__file__).with_name("RESULTS.md")) -> None:
    text = path.read_text() if path.exists() else "# provi benchmark results\n"
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        nxt = rest.find("\n## ")
        text = head + md + (rest[nxt:] if nxt >= 0 else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + md + "\n"
    path.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps: checks that the script runs")
    ap.add_argument("--only", default=None, help="comma-separated posterior names")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else list(pdb.POSTERIORS)
    rows = run(names, a.methods.split(","), a.quick)
    md = table(rows)
    print(md)
    if a.write:
        write_results(f"{SECTION}\n\n{__doc__.split(chr(10) + chr(10))[1]}\n\n{md}\n")


if __name__ == "__main__":
    main()

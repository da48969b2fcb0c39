"""Scale benchmark: minibatch VI on N = 1e6 and 1e7 data points, provi vs NumPyro's minibatch SVI.

Models: logistic regression (D = 10) and a hierarchical logistic regression (J = 100 group
intercepts with a shared mean and scale, D = 10 slopes). Both libraries fit a mean-field normal
guide (provi "meanfield", NumPyro AutoNormal) with Adam(1e-2) on minibatches of B = 1e4 drawn by
`numpyro.plate(..., subsample_size=B)`; one epoch is N / B steps.

Each configuration runs in its own process (so that its peak memory, ru_maxrss, is its own):
data generation, a first epoch (compilation included), then a second, timed epoch.
- provi: `provi.fit(..., steps=N/B)` twice; the second call is timed end to end (model
  inspection, the start on one minibatch, the compiled loop; its compiled programs are cached).
- NumPyro: `SVI.init` and one jitted `lax.fori_loop` over `svi.update` for an epoch (what
  `SVI.run(progress_bar=False)` compiles), run twice; the second run is timed.
Also: provi with data streamed from a host loader (`batches=provi.Batches(...)`), and provi
on 1, 2 and 4 devices (`devices=`; on CPU the devices are forced with XLA_FLAGS).

    python benchmarks/scale.py                # everything, writes benchmarks/results/scale.json
    python benchmarks/scale.py --quick        # N = 1e5 only
    python benchmarks/scale.py --one '{"lib": "provi", "model": "logreg", "n": 1000000}'
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
D, J, B = 10, 100, 10_000


def make_data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D), dtype=np.float32)
    beta = np.linspace(-1.0, 1.0, D).astype(np.float32)
    g = rng.integers(0, J, n).astype(np.int32)
    a = (0.5 + 0.8 * rng.standard_normal(J)).astype(np.float32)
    logits = x @ beta + a[g]
    y = (rng.random(n, dtype=np.float32) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return x, g, y, beta


def models():
    import numpyro
    import numpyro.distributions as dist

    def logreg(x, g, y, b=None):
        beta = numpyro.sample("beta", dist.Normal(0, 1).expand([D]).to_event(1))
        c = numpyro.sample("c", dist.Normal(0, 2))
        with numpyro.plate("N", x.shape[0], subsample_size=b) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=c + x[idx] @ beta), obs=y[idx])

    def hier(x, g, y, b=None):
        mu = numpyro.sample("mu", dist.Normal(0, 2))
        tau = numpyro.sample("tau", dist.HalfNormal(1))
        with numpyro.plate("J", J):
            a = numpyro.sample("a", dist.Normal(mu, tau))
        beta = numpyro.sample("beta", dist.Normal(0, 1).expand([D]).to_event(1))
        with numpyro.plate("N", x.shape[0], subsample_size=b) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=a[g[idx]] + x[idx] @ beta), obs=y[idx])

    def logreg_stream(x, g, y, n):
        beta = numpyro.sample("beta", dist.Normal(0, 1).expand([D]).to_event(1))
        c = numpyro.sample("c", dist.Normal(0, 2))
        with numpyro.plate("N", n, subsample_size=x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=c + x @ beta), obs=y)

    def hier_stream(x, g, y, n):
        mu = numpyro.sample("mu", dist.Normal(0, 2))
        tau = numpyro.sample("tau", dist.HalfNormal(1))
        with numpyro.plate("J", J):
            a = numpyro.sample("a", dist.Normal(mu, tau))
        beta = numpyro.sample("beta", dist.Normal(0, 1).expand([D]).to_event(1))
        with numpyro.plate("N", n, subsample_size=x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=a[g] + x @ beta), obs=y)

    return {"logreg": logreg, "hier": hier, "logreg_stream": logreg_stream, "hier_stream": hier_stream}


def run_one(cfg: dict) -> dict:
    """One configuration in this process: {epoch_s, first_s, peak_rss_mb, beta_err, ...}."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n, steps = int(cfg["n"]), int(cfg["n"]) // B
    x, g, y, beta_true = make_data(n)
    model = models()[cfg["model"] + ("_stream" if cfg.get("stream") else "")]
    out = dict(cfg, steps=steps, backend=jax.default_backend(), n_devices_seen=len(jax.devices()))
    if cfg["lib"] == "provi":
        import provi

        if cfg.get("stream"):
            def go():
                return provi.fit(model, n=n, batches=provi.Batches(x, g, y, batch_size=B), guide="meanfield",
                                 steps=steps, seed=0, progress=False, devices=cfg.get("devices"))
        else:
            xj, gj, yj = jnp.asarray(x), jnp.asarray(g), jnp.asarray(y)

            def go():
                return provi.fit(model, xj, gj, yj, b=B, guide="meanfield", steps=steps, seed=0, progress=False,
                                 devices=cfg.get("devices"))

        t = time.perf_counter()
        go()
        out["first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        res = go()
        out["epoch_s"] = time.perf_counter() - t
        draws = res.sample(1000)
        beta_hat = np.asarray(draws["beta"]).mean(0)
        out["final_loss"] = float(np.mean(res.losses[-max(1, steps // 10):]))
    else:
        import optax
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoNormal

        xj, gj, yj = jnp.asarray(x), jnp.asarray(g), jnp.asarray(y)
        guide = AutoNormal(model)
        svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())

        @jax.jit
        def epoch(state, xj, gj, yj):
            def body(i, carry):
                st, losses = carry
                st, loss = svi.update(st, xj, gj, yj, b=B)
                return st, losses.at[i].set(loss)

            return jax.lax.fori_loop(0, steps, body, (state, jnp.zeros(steps)))

        t = time.perf_counter()
        state = svi.init(jax.random.PRNGKey(0), xj, gj, yj, b=B)
        state1, losses = epoch(state, xj, gj, yj)
        jax.block_until_ready(losses)
        out["first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        state = svi.init(jax.random.PRNGKey(0), xj, gj, yj, b=B)
        state1, losses = epoch(state, xj, gj, yj)
        jax.block_until_ready(losses)
        out["epoch_s"] = time.perf_counter() - t
        params = svi.get_params(state1)
        beta_hat = np.asarray(params["beta_auto_loc"])
        out["final_loss"] = float(np.mean(np.asarray(losses)[-max(1, steps // 10):]))
    out["beta_err"] = float(np.sqrt(np.mean((beta_hat - beta_true) ** 2)))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def spawn(cfg: dict, timeout: int = 3600) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if cfg.get("devices"):
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cfg['devices']}"
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return dict(cfg, error=proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def configs(sizes):
    out = []
    for n in sizes:
        for model in ("logreg", "hier"):
            out.append({"lib": "provi", "model": model, "n": n})
            out.append({"lib": "numpyro", "model": model, "n": n})
            out.append({"lib": "provi", "model": model, "n": n, "stream": True})
    for dev in (1, 2, 4):
        out.append({"lib": "provi", "model": "hier", "n": sizes[0], "devices": dev})
    return out


def table(rows) -> str:
    lines = ["| library | model | N | mode | devices | epoch (s) | first epoch incl. compile (s) | peak RSS (MB) | beta RMSE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['lib']} | {r['model']} | {r['n']:.0e} | error | | | | | |")
            continue
        mode = "streamed batches" if r.get("stream") else "in memory, plate subsample"
        lines.append(
            f"| {r['lib']} | {r['model']} | {r['n']:.0e} | {mode} | {r.get('devices') or 1} | {r['epoch_s']:.2f} | "
            f"{r['first_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['beta_err']:.3f} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(json.loads(a.one))))
        return
    sizes = [100_000] if a.quick else [1_000_000, 10_000_000]
    rows = []
    for cfg in configs(sizes):
        r = spawn(cfg)
        rows.append(r)
        print(json.dumps(r), flush=True)
    path = pathlib.Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()

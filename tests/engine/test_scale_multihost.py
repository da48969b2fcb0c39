"""Several hosts: two processes on this machine, joined by `jax.distributed` over localhost (CPU
backend, gloo collectives, two forced devices each), fit one model data-parallel over the four
devices; both get the same result as a single process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = r'''
import json, os, sys
pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
if nproc > 1:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                               initialization_timeout=120)
    assert jax.process_count() == nproc and len(jax.devices()) == 2 * nproc and len(jax.local_devices()) == 2
import jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist, provi

rng = np.random.default_rng(0)
X = rng.normal(size=(400, 3)).astype(np.float32)
Y = (rng.random(400) < 1 / (1 + np.exp(-X @ np.array([1.0, -1.0, 0.5])))).astype(np.float32)

def logreg(x, y, b=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("n", x.shape[0], subsample_size=b) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])

res = provi.fit(logreg, jnp.asarray(X), jnp.asarray(Y), b=40, guide="meanfield", steps=200, seed=3,
                progress=False, devices=len(jax.devices()))
assert len(res.data[0].sharding.device_set) == len(jax.devices())
leaves = [np.asarray(x).tolist() for x in jax.tree.leaves(res.params)]
json.dump({"params": leaves, "losses": np.asarray(res.losses).tolist()}, open(out, "w"))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    return env


def test_two_processes_match_one(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    port = str(_free_port())
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    procs = [
        subprocess.Popen([sys.executable, str(worker), str(i), "2", port, str(outs[i])], env=_env(), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    single = subprocess.run([sys.executable, str(worker), "0", "1", "0", str(outs[2])], env=_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-4000:]
    got = [json.loads(o.read_text()) for o in outs]
    for other in got[1:]:
        np.testing.assert_allclose(other["losses"], got[0]["losses"], rtol=1e-5, atol=1e-4)
        for a, b in zip(got[0]["params"], other["params"]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

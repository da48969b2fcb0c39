"""Each VAE example, and the VAE benchmark, runs in --quick mode and reports sane numbers."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the VAE examples use scikit-learn's bundled digits (pip install 'provi[examples]')")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_json(script: str, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(ROOT / script), "--quick", "--json", *extra], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def finite(*xs):
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def test_vae_and_iwae():
    r = run_json("examples/vae.py")
    assert finite(r["elbo_trained_test_ll"], r["iwae_trained_test_ll"])
    # 64 binary pixels: a log-likelihood between -64 log 2 (uniform) and 0
    assert -64 * math.log(2) < r["elbo_trained_test_ll"] < 0 and -64 * math.log(2) < r["iwae_trained_test_ll"] < 0


def test_discrete_vaes():
    r = run_json("examples/vae_discrete.py")
    for method in ("gumbel", "gumbel_st", "reinforce", "vimco", "enumerate", "joint"):
        assert -64 * math.log(2) < r[f"{method}_test_ll"] < 0
    assert not any(k.endswith(("_unsupported", "_skipped")) for k in r), r


def test_mmd_and_beta_vae_report_collapse():
    r = run_json("examples/vae_mmd.py")
    for name in ("vae", "beta4_vae", "mmd_vae"):
        assert 0 <= r[f"{name}_active_units"] <= 8 and finite(r[f"{name}_kl_nats"], r[f"{name}_test_ll"])
    # a large beta collapses units: fewer active units and less information than the plain VAE
    assert r["beta4_vae_active_units"] <= r["vae_active_units"] and r["beta4_vae_kl_nats"] < r["vae_kl_nats"]


def test_cvae():
    r = run_json("examples/cvae.py")
    assert -32 * math.log(2) < r["cvae_test_cll"] < 0 and finite(r["baseline_test_cll"])


def test_benchmark_quick_json():
    r = run_json("benchmarks/vae.py")
    assert finite(r["elbo_trained_test_ll"], r["iwae_trained_test_ll"], r["provi_over_hand"])
    assert r["provi_over_hand"] > 0

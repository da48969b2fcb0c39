"""Smoke tests: benchmarks/overhead.py --quick runs and writes sane JSON; benchmarks/estimators.py
records genjax as skipped (with the setup recipe) or failed (with the error), never silently.

Speed is measured by the benchmark, never asserted here.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


@pytest.mark.slow
def test_overhead_quick_writes_json(tmp_path):
    out = tmp_path / "overhead.json"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                   check=True, timeout=300, capture_output=True, text=True)
    results = json.loads(out.read_text())

    assert results["quick"] is True
    assert {"platform", "cpu_count", "jax", "numpyro", "jax_backend"} <= results["machine"].keys()
    assert set(results["cases"]) == {"eight_schools", "logreg"}
    for name, case in results["cases"].items():
        competitors = case["competitors"]
        for entry in ("handwritten_jax", "numpyro_AutoNormal", "numpyro_AutoDiagonalNormal"):
            step = competitors[entry]["step_s"]
            assert math.isfinite(step) and step > 0, (name, entry, step)
            assert math.isfinite(competitors[entry]["wall_s"]), (name, entry)
        for entry in ("pyro_AutoNormal", "provi"):  # optional: measured or skipped
            assert entry in competitors, (name, entry)
    provi_es = results["cases"]["eight_schools"]["competitors"]["provi"]
    if "step_s" in provi_es:  # provi measured: the fresh-process walls and the paired ratio exist
        for key in ("wall_s", "wall_auto_s", "wall_warm_cache_s"):
            assert math.isfinite(provi_es[key]) and provi_es[key] > 0, key
        paired = results["cases"]["eight_schools"]["paired_provi_over_hand"]
        assert paired["pairs"] == 2 and 0 <= paired["dropped"] <= 2
        if paired["dropped"] < 2:  # a pair is dropped only when its timing measured noise, not a step
            assert 0 < paired["min"] <= paired["median"] <= paired["max"]
        else:
            assert paired["median"] is None


def _estimators():
    spec = importlib.util.spec_from_file_location("estimators_bench", SCRIPT.parent / "estimators.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_estimators_genjax_skipped_or_error_reported():
    est = _estimators()
    x = np.zeros((4, 3), np.float32)
    warm = {"model": {"W": np.zeros((4, 3), np.float32)}, "guide": {"V1": np.zeros((3, 4), np.float32)}}
    skipped = est.genjax_times(None, x, warm, draws=4, n_long=4, n_short=2)
    assert set(skipped) == {"skipped"}
    assert "--genjax-python" in skipped["skipped"] and "genjax==0.10.3" in skipped["skipped"]
    if importlib.util.find_spec("genjax") is not None:  # the check below needs an interpreter without it
        return
    # an interpreter without genjax: the failure is recorded with its text, not hidden as a skip
    failed = est.genjax_times(sys.executable, x, warm, draws=4, n_long=4, n_short=2)
    assert "genjax" in failed["error"] and "skipped" not in failed

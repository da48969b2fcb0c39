"""Smoke test: benchmarks/overhead.py --quick runs and writes sane JSON.

Speed is measured by the benchmark, never asserted here.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


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

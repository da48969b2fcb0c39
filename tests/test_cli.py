"""The command line, end to end, in a temporary directory."""

import json
import subprocess
import sys
import textwrap

import arviz as az
import pandas as pd


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "provi.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_builtin_example(tmp_path):
    out = tmp_path / "out"
    r = _run(["fit", "--out", str(out), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    for f in ["report.md", "summary.csv", "posterior.nc", "loss.png", "diagnostics.json", "fit/meta.json"]:
        assert (out / f).is_file(), f
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"mu", "tau", "theta[0]"} <= set(summary.index)
    assert 2 < summary.loc["mu", "mean"] < 7  # eight schools: posterior mean of mu is about 4.4
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert "posterior" in idata.groups() and "loss" in idata.sample_stats
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["stop_reason"] in ("converged", "steps") and diag["khat"] is not None
    assert "mu" in r.stdout and "k-hat" in r.stdout
    assert "Posterior summary" in (out / "report.md").read_text()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_user_model_and_data(tmp_path):
    (tmp_path / "m.py").write_text(
        textwrap.dedent(
            """
            import numpyro, numpyro.distributions as dist

            def regression(x, y=None):
                a = numpyro.sample("a", dist.Normal(0, 10))
                b = numpyro.sample("b", dist.Normal(0, 10))
                with numpyro.plate("n", x.shape[0]):
                    numpyro.sample("y", dist.Normal(a + b * x, 0.5), obs=y)
            """
        )
    )
    x = [i / 10 for i in range(20)]
    (tmp_path / "d.json").write_text(json.dumps({"x": x, "y": [1 + 2 * v for v in x]}))
    r = _run(["fit", "m.py:regression", "--data", "d.json", "--guide", "fullrank", "--steps", "2000", "--out", "o", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    s = pd.read_csv(tmp_path / "o" / "summary.csv", index_col=0)
    assert abs(s.loc["b", "mean"] - 2) < 0.3 and abs(s.loc["a", "mean"] - 1) < 0.3


def test_bad_model_path(tmp_path):
    r = _run(["fit", "missing.py", "--out", "o"], tmp_path)
    assert r.returncode != 0 and "no model file" in r.stderr
    (tmp_path / "m.py").write_text("x = 1\n")
    r = _run(["fit", "m.py:nope", "--out", "o"], tmp_path)
    assert r.returncode != 0 and "has no function 'nope'" in r.stderr

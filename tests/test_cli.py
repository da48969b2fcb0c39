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


MODEL = """
import numpyro, numpyro.distributions as dist

def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0, 10))
    with numpyro.plate("n", 5):
        numpyro.sample("y", dist.Normal(a * x, 0.5), obs=y)

def broken(x, y=None):
    a = numpyro.sample("a", dist.Normal(0, 10))
    raise RuntimeError("the model's own message")
"""


def _one_line_error(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("provi: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_user_errors_are_one_line_with_exit_status_2(tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "syntax.py").write_text("def model(:\n")
    good = {"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.1, 1.0, 2.1, 2.9, 4.2]}
    files = {
        "short.json": {"x": good["x"], "y": good["y"][:3]},
        "nan.json": {"x": good["x"], "y": [0.1, float("nan"), 2.1, 2.9, 4.2]},
        "extra.json": {**good, "z": [1.0]},
        "good.json": good,
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content).replace("NaN", "NaN"))
    (tmp_path / "bad.json").write_text('{"x": [1, 2,')
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    fit = ["fit", "m.py:regression", "--no-progress"]
    _one_line_error(_run([*fit, "--data", "short.json", "--out", "o"], tmp_path), "observed site 'y'", "shape")
    _one_line_error(_run([*fit, "--data", "nan.json", "--out", "o"], tmp_path), "observed site 'y'", "non-finite")
    _one_line_error(_run([*fit, "--data", "extra.json", "--out", "o"], tmp_path), "['z']", "does not take")
    _one_line_error(_run([*fit, "--data", "bad.json", "--out", "o"], tmp_path), "bad.json is not valid JSON")
    _one_line_error(_run([*fit, "--data", "missing.json", "--out", "o"], tmp_path), "no data file 'missing.json'")
    _one_line_error(_run(["fit", "syntax.py", "--out", "o"], tmp_path), "syntax.py line 1: syntax error")
    _one_line_error(_run([*fit, "--data", "good.json", "--guide", "fullrnk", "--out", "o"], tmp_path), "unknown guide 'fullrnk'", "meanfield")
    _one_line_error(_run([*fit, "--data", "good.json", "--steps", "-5", "--out", "o"], tmp_path), "--steps must be a positive integer")
    _one_line_error(_run([*fit, "--data", "good.json", "--out", "blocker/o"], tmp_path), "cannot write the output folder 'blocker/o'")
    _one_line_error(_run(["fit", "--nonsense"], tmp_path), "unrecognized arguments")
    _one_line_error(_run(["summary", "nowhere"], tmp_path), "holds no fit written by `provi fit`")
    assert not (tmp_path / "o").exists()  # every check came before any fitting or writing


def test_a_bug_in_the_model_keeps_its_traceback_trimmed_to_the_users_frames(tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "good.json").write_text(json.dumps({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.1, 1.0, 2.1, 2.9, 4.2]}))
    r = _run(["fit", "m.py:broken", "--data", "good.json", "--out", "o", "--no-progress"], tmp_path)
    assert r.returncode == 1
    assert "RuntimeError: the model's own message" in r.stderr and "m.py" in r.stderr
    assert "numpyro" not in r.stderr and "/provi/" not in r.stderr


def test_help_lists_every_guide_and_summary_report_json(tmp_path):
    r = _run(["fit", "--help"], tmp_path)
    for name in ("auto", "meanfield", "fullrank", "lowrank", "laplace", "flow", "iaf", "nsf", "planar", "radial", "mixture", "delta"):
        assert name in r.stdout
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "good.json").write_text(json.dumps({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.1, 1.0, 2.1, 2.9, 4.2]}))
    r = _run(["fit", "m.py:regression", "--data", "good.json", "--guide", "meanfield", "--steps", "1000", "--out", "o", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {"summary", "diagnostics"} and abs(out["summary"]["a"]["mean"] - 1.0) < 0.1
    assert out["diagnostics"]["steps"] == 1000
    r = _run(["summary", "o", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert abs(again["summary"]["a"]["mean"] - out["summary"]["a"]["mean"]) < 0.05
    (tmp_path / "o" / "report.md").unlink()
    r = _run(["report", "o"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Posterior summary" in (tmp_path / "o" / "report.md").read_text()

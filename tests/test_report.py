"""provi.report: the files a fit's report writes."""

import json

import matplotlib
import numpy as np

import provi
from provi.report import plot_losses, write_outputs


def test_write_outputs(es, tmp_path):
    model, data = es
    res = provi.fit(model, *data, guide="meanfield", steps=500, progress=False)
    out = write_outputs(res, tmp_path / "out", title="eight schools", draws=500)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"summary.csv", "posterior.nc", "loss.png", "diagnostics.json", "report.md", "fit"} <= names
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# eight schools") and "MeanField()" in report and "theta[7]" in report
    diag = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert diag["stop_reason"] == "steps" and diag["steps"] == 500
    assert set(out) == {"summary", "diagnostics"}
    import arviz as az

    posterior = az.from_netcdf(str(tmp_path / "out" / "posterior.nc")).posterior
    assert posterior.sizes["draw"] == 500  # the draws the summary was computed from
    np.testing.assert_allclose(float(posterior["mu"].mean()), float(out["summary"].loc["mu", "mean"]), rtol=1e-5)


def test_loss_plot_leaves_matplotlib_alone(tmp_path):
    """The PNG is written without pyplot: the backend a user (or a notebook) chose is unchanged."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's choice, not the Agg the PNG is drawn with
    try:
        plot_losses(np.linspace(10.0, 1.0, 300) + np.sin(np.arange(300)), tmp_path / "loss.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

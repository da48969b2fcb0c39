"""provi.report: the files a fit's report writes."""

import json

import provi
from provi.report import write_outputs


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

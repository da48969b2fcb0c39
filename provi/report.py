"""Writing a fit's outputs (floor 10): summary CSV, InferenceData (netCDF), loss plot, diagnostics, report."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from provi.idata import write_netcdf
from provi.result import FitResult

__all__ = ["write_outputs", "plot_losses", "jsonable"]


def plot_losses(losses: np.ndarray, path) -> None:
    """A PNG of the loss per step, with a running mean. Drawn on a bare `matplotlib.figure.Figure`
    (no pyplot): nothing global changes, so a notebook's backend and figures are left alone."""
    from matplotlib.figure import Figure  # heavy: imported when first needed

    fig = Figure(figsize=(7, 3.5), dpi=110)
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.4, color="C0", label="loss per step")
    if len(losses) >= 20:
        w = max(10, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="C1", lw=1.5, label=f"running mean ({w} steps)")
        lo, hi = np.percentile(losses[len(losses) // 10 :], [1, 99])
        pad = 0.2 * (hi - lo + 1e-9)
        ax.set_ylim(lo - pad, max(hi + pad, float(np.max(smooth[: max(1, len(smooth) // 20)]))))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative objective)")
    ax.legend(loc="upper right", frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def _markdown_table(df) -> str:
    cols = list(df.columns)
    lines = ["| quantity | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in df.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def write_outputs(res: FitResult, out, title: str = "provi fit", draws: int = 4000) -> dict:
    """Write `summary.csv`, `posterior.nc`, `loss.png`, `diagnostics.json`, `report.md` into `out`.
    The summary and `posterior.nc` come from the same `draws` guide draws (drawn and weighed once)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = res.summary(draws)
    summary.to_csv(out / "summary.csv", index_label="quantity")
    write_netcdf(res.to_xarray(draws), out / "posterior.nc")  # ArviZ's file, without importing ArviZ
    plot_losses(np.asarray(res.losses), out / "loss.png")
    diag = res.diagnostics()
    (out / "diagnostics.json").write_text(json.dumps(jsonable(diag.to_dict()), indent=2))
    res.save(out / "fit")
    report = [
        f"# {title}",
        "",
        f"- guide: `{res.guide.name}`; objective: `{res.objective!r}`",
        f"- steps: {res.stop.steps} (stopped: {res.stop.reason}); wall time {res.stop.seconds:.2f} s",
        f"- final loss: {res.final_loss:.4f}",
        "",
        "## Posterior summary",
        "",
        _markdown_table(summary),
        "",
        "## Diagnostics",
        "",
        "```",
        str(diag),
        "```",
        "",
        f"Verdict: **{'trustworthy' if diag.trustworthy else 'do not trust without checking'}**.",
        "",
        "## Loss",
        "",
        "![loss per step](loss.png)",
        "",
        "Files: `summary.csv` (this table), `posterior.nc` (ArviZ InferenceData), `diagnostics.json`, `fit/` (parameters, npz + JSON).",
        "",
    ]
    (out / "report.md").write_text("\n".join(report))
    return {"summary": summary, "diagnostics": diag}


def jsonable(x):
    """`x` with NumPy numbers as Python numbers, non-finite floats as None and other objects as
    strings: what `json.dumps` takes (diagnostics.json, `provi ... --json`)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)

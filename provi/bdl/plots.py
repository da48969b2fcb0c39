"""Reliability diagrams: accuracy against confidence per bin, the picture behind the ECE."""

import numpy as np

from provi.bdl.metrics import ece, reliability

__all__ = ["reliability_diagram"]


def reliability_diagram(log_probs, labels, n_bins: int = 15, ax=None, label: str | None = None):
    """Draw accuracy against mean confidence for each non-empty bin on `ax` (a new figure if
    None), with the diagonal of perfect calibration; the legend gives the ECE. Returns the axes."""
    import matplotlib.pyplot as plt  # matplotlib is imported only when a plot is drawn

    conf, acc, count = (np.asarray(a) for a in reliability(log_probs, labels, n_bins))
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    keep = count > 0
    name = f"{label}: " if label else ""
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    ax.plot(conf[keep], acc[keep], marker="o", ms=3, label=f"{name}ECE {float(ece(log_probs, labels, n_bins)):.3f}")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return ax

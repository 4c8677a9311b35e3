"""Figures for benchmark reports, and the calibration numbers the reliability diagram draws.

Figures are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas: no pyplot, so no global
figure registry, no backend switch and no display needed (servers, CI). Every function writes one
PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def per_observation_f1_chart(
    f1: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "Per-observation F1"
) -> Path:
    """Grouped bar chart: one group per observation, one bar per system.

    Args:
        f1: ``{system: {observation: F1}}``; observations are drawn in the first system's order.
        path: PNG to write (parent folders are created).
        title: Figure title (say the protocol / label convention here).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    systems = list(f1)
    observations = list(next(iter(f1.values()), {}))
    fig = _figure(max(8.0, 0.9 * len(observations) + 2), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(observations))
    width = 0.8 / max(len(systems), 1)
    for k, system in enumerate(systems):
        values = [f1[system].get(o, 0.0) or 0.0 for o in observations]
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, values, width, label=system)
    ax.set_xticks(x)
    ax.set_xticklabels(observations, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(title)
    if systems:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


@dataclass(frozen=True)
class Calibration:
    """Reliability-diagram bins and the summary numbers of one set of probabilities.

    Attributes:
        edges: (n_bins + 1,) bin edges on [0, 1].
        confidence: (n_bins,) mean predicted probability per bin (NaN for an empty bin).
        accuracy: (n_bins,) observed positive fraction per bin (NaN for an empty bin).
        counts: (n_bins,) samples per bin.
        ece: expected calibration error: sum over bins of count/n * |accuracy - confidence|.
        brier: mean squared difference between probability and outcome.
        n: number of (probability, outcome) pairs.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float
    brier: float
    n: int


def calibration(probs: np.ndarray, targets: np.ndarray, n_bins: int = 10) -> Calibration:
    """Equal-width reliability bins, ECE and Brier score of binary probabilities.

    Pairs are flattened, so a (n, 14) array scores every (study, observation) cell; NaN targets
    (unknown labels) are dropped first. The last bin includes p = 1.

    Raises:
        ValueError: Shapes differ, or no pair is left.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(targets, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probabilities and targets differ in size: {p.shape} vs {y.shape}")
    keep = ~np.isnan(y) & ~np.isnan(p)
    p, y = p[keep], y[keep]
    if len(p) == 0:
        raise ValueError("no labelled pair to calibrate")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=n_bins) / counts
        acc = np.bincount(idx, weights=y, minlength=n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / len(p) * np.abs(acc[filled] - conf[filled])))
    return Calibration(edges, conf, acc, counts, ece, float(np.mean((p - y) ** 2)), int(len(p)))


def reliability_diagram(
    curves: Mapping[str, Calibration], path: str | Path, title: str = "Reliability diagram"
) -> Path:
    """One reliability curve per entry (e.g. per source) over the diagonal, with ECE/Brier in the legend."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(5.5, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    for name, cal in curves.items():
        filled = cal.counts > 0
        ax.plot(
            cal.confidence[filled],
            cal.accuracy[filled],
            marker="o",
            label=f"{name} (ECE {cal.ece:.3f}, Brier {cal.brier:.3f}, n={cal.n})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive fraction")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path

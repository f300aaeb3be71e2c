"""Figures of RDMs and of RDM comparisons (matplotlib, imported when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexmap.rsa.compare import rank_rows
from cortexmap.rsa.rdm import RDMs


def plot_rdms(rdms: RDMs, max_rdms: int = 12, rank_transform: bool = True, cmap: str = "viridis"):
    """Grid of RDM heatmaps (first ``max_rdms``); returns a matplotlib Figure.

    rank_transform: show percentile ranks of the dissimilarities (the usual RSA display, which
    makes RDMs with different scales comparable); False shows raw values with a colour bar.
    """
    import matplotlib.pyplot as plt

    shown = rdms[: max(1, min(max_rdms, len(rdms)))]
    k = len(shown)
    cols = min(k, 4)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    vec = shown.vectors
    if rank_transform:
        ok = ~np.isnan(vec)
        ranked = np.full_like(vec, np.nan)
        for r in range(k):  # percentiles in [0, 100], NaN pairs left blank
            ranked[r, ok[r]] = 100 * (rank_rows(vec[r, ok[r]])[0] - 1) / max(ok[r].sum() - 1, 1)
        vec = ranked
    mats = RDMs(vec, shown.n_conditions, shown.names, shown.metric).matrices()
    for ax, mat, name in zip(axes.ravel(), mats, shown.names, strict=False):
        im = ax.imshow(mat, cmap=cmap, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                     label="percentile" if rank_transform else shown.metric)
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    title = f"RDMs ({shown.metric}, {shown.n_conditions} conditions)"
    if len(rdms) > k:
        title += f" - first {k} of {len(rdms)}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_similarity(
    sim: np.ndarray, names_a: Sequence[str], names_b: Sequence[str], method: str,
    annotate: bool | None = None,
):
    """Heatmap of a compare() matrix (n_a, n_b); returns a matplotlib Figure."""
    import matplotlib.pyplot as plt

    sim = np.asarray(sim)
    n_a, n_b = sim.shape
    fig, ax = plt.subplots(figsize=(min(2 + 0.6 * n_b, 14), min(1.5 + 0.45 * n_a, 14)))
    lim = float(np.nanmax(np.abs(sim))) if np.isfinite(sim).any() else 1.0
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(n_b), list(names_b), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_a), list(names_a), fontsize=8)
    if annotate is None:
        annotate = n_a * n_b <= 150
    if annotate:
        for i in range(n_a):
            for j in range(n_b):
                strong = abs(sim[i, j]) > 0.6 * lim  # white text on saturated cells
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if strong else "black")
    fig.colorbar(im, ax=ax, label=method)
    ax.set_title(f"RDM similarity ({method})", fontsize=10)
    fig.tight_layout()
    return fig

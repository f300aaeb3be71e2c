"""Figures of the synthesis analysis (images, RDM correlations, optimisation, mapping)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

SET_LABELS = {"natural": "natural images", "synthesized": "synthesized images",
              "residual": "natural, residual RDMs", "partial": "natural, partial corr.",
              "noise": "noise phantom (control)"}
SET_COLORS = {"natural": "#4c72b0", "synthesized": "#dd8452", "residual": "#55a868",
              "partial": "#8172b3", "noise": "#999999"}


def image_grid(images: np.ndarray, ncols: int = 8):
    """Grid of images (n, H, W, 3)."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.4 * nrows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(np.clip(images[k], 0, 1))
            ax.set_title(f"{k:02d}", fontsize=7)
    fig.tight_layout()
    return fig


def correlation_matrices(corrs: dict[str, np.ndarray], layers: list[str]):
    """Layer x layer RDM correlation, one panel per image set, shared colour scale [-1, 1]."""
    fig, axes = plt.subplots(1, len(corrs), figsize=(4.2 * len(corrs) + 1.0, 3.8),
                             squeeze=False)
    im = None
    for k, (ax, (name, c)) in enumerate(zip(axes[0], corrs.items(), strict=True)):
        im = ax.imshow(c, vmin=-1, vmax=1, cmap="RdBu_r")
        off = np.abs(c[np.triu_indices(len(c), 1)]).mean()
        ax.set_title(f"{SET_LABELS.get(name, name)}\nmean |r| = {off:.2f}", fontsize=9)
        ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
        # layer names on the first panel only: long names would run into the next panel
        ax.set_yticks(range(len(layers)), layers if k == 0 else [], fontsize=7)
        for i in range(len(c)):
            for j in range(len(c)):
                ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Pearson r between layer RDMs")
    return fig


def optimization_curve(history, natural_mean_abs_r: float):
    """Loss and mean |r| over steps, with the natural-image level for reference."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(history["step"], history["loss"], lw=0.8, color="0.5", label="loss (mean r², jittered)")
    if len(history) >= 10:
        w = max(len(history) // 25, 2)
        ax.plot(history["step"], history["mean_abs_r"].rolling(w, min_periods=1).mean(),
                color=SET_COLORS["synthesized"], label=f"mean |r| (running mean, {w} steps)")
    else:
        ax.plot(history["step"], history["mean_abs_r"], color=SET_COLORS["synthesized"],
                label="mean |r|")
    ax.axhline(natural_mean_abs_r, color=SET_COLORS["natural"], ls="--",
               label=f"natural images mean |r| = {natural_mean_abs_r:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("correlation between layer RDMs")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def orthogonality_bars(table):
    """Mean |off-diagonal| correlation per image set (lower = more orthogonal layers)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    names = list(table["set"])
    ax.bar([SET_LABELS.get(n, n) for n in names], table["mean_abs_r"],
           color=[SET_COLORS.get(n, "0.5") for n in names])
    for k, v in enumerate(table["mean_abs_r"]):
        ax.text(k, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_ylabel("mean |r| between layer RDMs")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


def rdm_panels(rdms, title: str):
    """Each layer's RDM (rank-transformed for display) for one image set."""
    mats = rdms.matrices()
    k = len(mats)
    fig, axes = plt.subplots(1, k, figsize=(2.0 * k, 2.3), squeeze=False)
    for ax, m, name in zip(axes[0], mats, rdms.names, strict=True):
        iu = np.triu_indices(len(m), 1)
        ranks = np.zeros_like(m)
        ranks[iu] = np.argsort(np.argsort(m[iu])) / max(len(iu[0]) - 1, 1)
        ranks = ranks + ranks.T
        ax.imshow(ranks, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def mapping_bars(summary):
    """Recovery Dice and overlap Dice per image set, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    names = list(summary["set"])
    labels = [SET_LABELS.get(n, n) for n in names]
    colors = [SET_COLORS.get(n, "0.5") for n in names]
    for ax, col, title in zip(
        axes, ["mean_recovery_dice", "mean_overlap_dice", "shared_voxel_fraction"],
        ["recovery: Dice with planted region\n(higher is better)",
         "overlap: Dice between layer maps\n(lower is more selective)",
         "mapped voxels claimed by > 1 layer"], strict=True,
    ):
        ax.bar(labels, summary[col], color=colors)
        for k, v in enumerate(summary[col]):
            ax.text(k, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    fig.tight_layout()
    return fig

"""Figures of the universal-dimensions analysis."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def relation_figure(dims: pd.DataFrame):
    """Hexbin density of brain similarity against universality, with a least-squares line."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    x, y = dims.universality.to_numpy(), dims.brain_similarity.to_numpy()
    hb = ax.hexbin(x, y, gridsize=25, cmap="Blues", mincnt=1)
    fig.colorbar(hb, ax=ax, label="dimensions per bin")
    if len(x) > 1 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, color="crimson", lw=1.5, label="least-squares fit")
        ax.legend(loc="upper left", frameon=False)
    ax.set_xlabel("universality (mean r from other networks)")
    ax.set_ylabel("brain similarity (r from voxels)")
    ax.set_title("Universality vs brain similarity")
    return fig


def reduction_figure(red: pd.DataFrame):
    """ROI RSA against k for most / least universal dimensions, with the full layer."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for selection, color in (("most universal", "tab:blue"), ("least universal", "tab:gray")):
        sub = red[red.selection == selection].groupby("k").rsa
        mean, sem = sub.mean(), sub.sem().fillna(0)
        ax.plot(mean.index, mean.values, "o-", color=color, label=f"k {selection}")
        ax.fill_between(mean.index, mean - sem, mean + sem, color=color, alpha=0.2)
    full = red[red.selection == "full layer"].rsa.mean()
    ax.axhline(full, ls="--", color="k", label="full layer")
    ax.set_xscale("log")
    ax.set_xlabel("k (number of dimensions kept)")
    ax.set_ylabel("RSA with brain region (Spearman)")
    ax.set_title("Reducing networks to their universal dimensions")
    ax.legend(frameon=False)
    return fig

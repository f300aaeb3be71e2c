"""Layer -> region maps: assignment tables, overlap between maps, recovery of a planted truth.

Inputs are per-model group results over one common mask (see
:func:`cortexmap.brain.stats.group_test`), or plain boolean / value arrays over a masker's voxels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from cortexmap.brain.io import Atlas, BrainMasker
from cortexmap.brain.stats import GroupTestResult
from cortexmap.errors import CortexmapError


def overlap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dice and Jaccard overlap of two boolean maps of equal shape (NaN when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise CortexmapError(f"Maps differ in shape: {a.shape} vs {b.shape}.")
    both, na, nb = int((a & b).sum()), int(a.sum()), int(b.sum())
    union = na + nb - both
    return {"n_a": na, "n_b": nb, "n_both": both,
            "dice": 2 * both / (na + nb) if na + nb else np.nan,
            "jaccard": both / union if union else np.nan}


def overlap_table(masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise overlap of named boolean maps: columns a, b, n_a, n_b, n_both, dice, jaccard."""
    rows = [{"a": a, "b": b, **overlap(masks[a], masks[b])}
            for a, b in itertools.combinations(masks, 2)]
    return pd.DataFrame(rows, columns=["a", "b", "n_a", "n_b", "n_both", "dice", "jaccard"])


def _common_masker(group: dict[str, GroupTestResult]) -> BrainMasker:
    if not group:
        raise CortexmapError("No group results given.")
    first = next(iter(group.values())).masker
    for name, g in group.items():
        if g.masker.n_voxels != first.n_voxels or not np.array_equal(g.masker.indices,
                                                                     first.indices):
            raise CortexmapError(
                f"Group result {name!r} lies on another mask; run group_test on maps of the "
                "same subjects so all models share the common mask."
            )
    return first


def winner_map(group: dict[str, GroupTestResult]) -> np.ndarray:
    """(n_voxels,) index (in ``group`` order) of the model with the highest group mean."""
    _common_masker(group)
    return np.argmax(np.stack([g.mean for g in group.values()]), axis=0)


def model_maps(
    group: dict[str, GroupTestResult],
    alpha: float = 0.05,
    correction: str = "fwe",
    winner_take_all: bool = True,
) -> dict[str, np.ndarray]:
    """Boolean map per model: voxels significant for it (and, by default, where it beats every
    other model in group-mean correlation, so each voxel is given to one model at most)."""
    win = winner_map(group) if winner_take_all else None
    out = {}
    for i, (name, g) in enumerate(group.items()):
        sig = g.significant(alpha, correction)
        out[name] = sig & (win == i) if win is not None else sig
    return out


def assign_layers(
    group: dict[str, GroupTestResult], atlas: Atlas, alpha: float = 0.05,
    correction: str = "fwe",
) -> pd.DataFrame:
    """Layer -> region table: for every atlas region and model, the mean group correlation over
    the region's voxels, the fraction of region voxels significant for the model, and the
    model's rank in the region; ``best`` marks the top model per region."""
    masker = _common_masker(group)
    rows = []
    for region in atlas.region_names:
        sel = atlas.region_mask(region, masker)
        if not sel.any():
            continue
        for name, g in group.items():
            rows.append({"region": region, "model": name, "n_voxels": int(sel.sum()),
                         "mean_r": float(g.mean[sel].mean()), "peak_r": float(g.mean[sel].max()),
                         "fraction_significant": float(g.significant(alpha, correction)[sel]
                                                       .mean())})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["rank"] = df.groupby("region")["mean_r"].rank(ascending=False, method="min")
    df["best"] = df["rank"] == 1
    return df


def recovery_scores(
    recovered: dict[str, np.ndarray], masker: BrainMasker, atlas: Atlas,
    planted: dict[str, str],
) -> pd.DataFrame:
    """How well maps recover a planted truth (phantom): per region, Dice/Jaccard/precision/
    recall of the map of the model planted there against the region's voxels.

    recovered: model name -> bool (n_voxels,) over ``masker`` (e.g. :func:`model_maps`).
    planted: region -> model name (``PhantomDataset.planted``).
    """
    rows = []
    for region, model in planted.items():
        truth = atlas.region_mask(region, masker)
        if model not in recovered:
            raise CortexmapError(f"No map for planted model {model!r}; maps: {list(recovered)}.")
        rec = np.asarray(recovered[model], bool)
        ov = overlap(rec, truth)
        rows.append({"region": region, "planted": model, "n_truth": ov["n_b"],
                     "n_recovered": ov["n_a"], "dice": ov["dice"], "jaccard": ov["jaccard"],
                     "precision": ov["n_both"] / ov["n_a"] if ov["n_a"] else np.nan,
                     "recall": ov["n_both"] / ov["n_b"] if ov["n_b"] else np.nan})
    return pd.DataFrame(rows)

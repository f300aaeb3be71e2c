"""Group statistics on brain maps: sign-flip permutation with max-statistic FWE, FDR, clusters.

The test asks, per voxel, whether the mean over subjects of a map (e.g. searchlight RSA
correlations) exceeds 0. Under the null each subject's value is symmetric around 0, so flipping
the signs of whole subject maps gives the null distribution of the one-sample t statistic;
taking the maximum over voxels of each flipped t map controls the family-wise error
(Nichols & Holmes 2002). The maximum is taken over the t statistic (a pivotal statistic,
Winkler et al. 2014), not the mean: RDM correlations are right-skewed under the null (like
Mantel statistics), so each subject's null map has higher positive peaks than negative ones
and the unflipped pattern's maximum mean beats the flipped patterns' too often; the t
statistic divides a one-subject peak by the spread it causes, which keeps the rate at
alpha on null phantoms (docs/brain.md).
With few subjects every sign pattern is enumerated (an exact test,
``2**n_subjects`` patterns); otherwise ``n_perm`` random patterns are drawn. Memory stays
bounded: sign patterns are processed in blocks and only the per-pattern maximum and the
per-voxel exceedance counts are kept. This is the whole-brain, memory-bounded counterpart of
:func:`cortexmap.rsa.sign_flip_test` (same statistic and p-value convention).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from cortexmap.brain.io import Atlas, BrainMasker, check_same_grid
from cortexmap.errors import CortexmapError
from cortexmap.rsa import fdr


@dataclass
class GroupTestResult:
    """Per-voxel group statistics over ``masker``'s voxels, each (n_voxels,).

    mean: mean over subjects; t: one-sample t; p: uncorrected permutation p; p_fwe: max-stat
    FWE-corrected p; q_fdr: Benjamini-Hochberg q of ``p``. null_max: (n_patterns,) maximum
    statistic of each sign pattern. exact: every sign pattern was enumerated.
    """

    mean: np.ndarray
    t: np.ndarray
    p: np.ndarray
    p_fwe: np.ndarray
    q_fdr: np.ndarray
    null_max: np.ndarray
    masker: BrainMasker
    n_subjects: int
    exact: bool
    name: str = "map"
    statistic: str = "mean"

    def significant(self, alpha: float = 0.05, correction: str = "fwe") -> np.ndarray:
        """Bool (n_voxels,) of voxels significant at ``alpha`` ("fwe", "fdr" or "none")."""
        p = {"fwe": self.p_fwe, "fdr": self.q_fdr, "none": self.p}.get(correction)
        if p is None:
            raise CortexmapError(f"correction must be fwe, fdr or none; got {correction!r}.")
        return np.nan_to_num(p, nan=1.0) <= alpha

    def img(self, kind: str = "t") -> nib.Nifti1Image:
        """A NIfTI map of "t", "mean", "p", "p_fwe" or "q_fdr" (NaN where not tested)."""
        if kind not in ("t", "mean", "p", "p_fwe", "q_fdr"):
            raise CortexmapError(f"Unknown map kind {kind!r}.")
        return self.masker.inverse_transform(getattr(self, kind).astype(np.float32),
                                             fill=np.nan)

    def to_frame(self) -> pd.DataFrame:
        xyz = self.masker.voxel_mm()
        return pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "mean": self.mean,
                             "t": self.t, "p": self.p, "p_fwe": self.p_fwe, "q_fdr": self.q_fdr})


def stack_maps(maps: list[Any], model: str | int = 0) -> tuple[np.ndarray, BrainMasker]:
    """Align per-subject maps on a common mask: voxels finite in every subject.

    maps: SearchlightResult objects (``model`` picks the map) or NIfTI images on one grid.
    Returns (n_subjects, n_voxels) values and the common masker.
    """
    if not maps:
        raise CortexmapError("No subject maps given.")
    imgs = [m.img(model) if hasattr(m, "img") else m for m in maps]
    ref = imgs[0]
    vols = []
    for k, img in enumerate(imgs):
        check_same_grid(img, ref, f"subject map {k}", "subject map 0")
        vols.append(np.asarray(img.dataobj, dtype=np.float64))
    vols = np.stack(vols)
    common = np.isfinite(vols).all(axis=0)
    if hasattr(maps[0], "masker"):  # only voxels inside every subject's mask
        for m in maps:
            common &= m.masker.mask
    if not common.any():
        raise CortexmapError("The subject maps share no finite voxel; check their masks.")
    masker = BrainMasker(nib.Nifti1Image(common.astype(np.uint8), ref.affine))
    return vols.reshape(len(vols), -1)[:, masker.indices], masker


def _sign_patterns(n: int, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    if 2**n <= n_perm:
        return np.array(list(itertools.product([1.0, -1.0], repeat=n))), True
    return rng.choice([-1.0, 1.0], size=(n_perm, n)), False


def group_test(
    values: np.ndarray | list[Any],
    masker: BrainMasker | None = None,
    n_perm: int = 5000,
    seed: int | None = 0,
    model: str | int = 0,
    statistic: str = "t",
    block_mb: float = 8.0,
    name: str = "map",
) -> GroupTestResult:
    """One-sided (mean > 0) sign-flip permutation test per voxel with max-stat FWE and FDR.

    statistic: "t" (default) or "mean" — the per-voxel statistic whose maximum over voxels
    builds the FWE null (uncorrected ``p`` and ``q_fdr`` are the same for both: per voxel the
    t statistic is a monotone function of the mean under sign flips). "mean" is valid only
    when each subject's map is symmetric around 0 under the null; searchlight RDM
    correlations are right-skewed, and with "mean" a third to a fifth of null phantom maps
    had an FWE-significant voxel at alpha 0.05 (with "t": at most alpha; docs/brain.md).
    The ``t`` field of the result always holds the t statistic.

    values: (n_subjects, n_voxels) array with ``masker``, or a list of per-subject
    SearchlightResult / NIfTI maps (aligned with :func:`stack_maps`; ``model`` picks the map).
    n_perm: random sign patterns; when ``2**n_subjects <= n_perm`` all patterns are enumerated
    (exact test). p-values follow the Monte Carlo convention ``(1 + #exceed) / (1 + n_perm)``
    for random patterns and ``#exceed / 2**n`` (identity included) when exact.
    """
    if isinstance(values, (list, tuple)):
        v, masker = stack_maps(list(values), model)
    else:
        if masker is None:
            raise CortexmapError("Pass masker= with a (n_subjects, n_voxels) array.")
        v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 2:
        raise CortexmapError(f"values must be (n_subjects >= 2, n_voxels); got {v.shape}.")
    if v.shape[1] != masker.n_voxels:
        raise CortexmapError(f"values have {v.shape[1]} voxels but the mask {masker.n_voxels}.")
    if not np.isfinite(v).all():
        raise CortexmapError("values contain NaN/inf; align subject maps with stack_maps().")
    n, k = v.shape
    signs, exact = _sign_patterns(n, n_perm, np.random.default_rng(seed))
    sumsq = (v**2).sum(axis=0)

    def tstat(mean: np.ndarray) -> np.ndarray:
        # sum of squares is invariant to sign flips, so only the mean changes; computed in place
        # (the null blocks dominate the cost), the same operations as the textbook formula
        # sqrt(n) * mean / sqrt(max(sumsq - n * mean**2, 0) / (n - 1)), 0 where that is 0
        sd = np.square(mean)
        sd *= n
        np.subtract(sumsq, sd, out=sd)
        np.maximum(sd, 0.0, out=sd)
        sd /= n - 1
        np.sqrt(sd, out=sd)
        pos = sd > 0
        np.divide(mean, sd, out=sd, where=pos)
        sd *= np.sqrt(n)
        sd[~pos] = 0.0
        return sd

    if statistic not in ("mean", "t"):
        raise CortexmapError(f"statistic must be 'mean' or 't'; got {statistic!r}.")
    stat = tstat if statistic == "t" else (lambda m: m)
    mean = v.mean(axis=0)
    t_obs = tstat(mean)
    s_obs = stat(mean)
    threshold = s_obs - 1e-12
    exceed = np.zeros(k, dtype=np.int64)
    null_max = np.empty(len(signs))
    block = max(1, int(block_mb * 2**20 // (8 * 2 * k)))
    for start in range(0, len(signs), block):
        m = signs[start:start + block] @ v
        m /= n
        t = stat(m)
        null_max[start:start + block] = t.max(axis=1)
        exceed += np.count_nonzero(t >= threshold, axis=0)
    # how many pattern maxima reach each voxel's t: one sort instead of a (patterns, voxels) table
    sorted_max = np.sort(null_max)
    fwe_exceed = len(signs) - np.searchsorted(sorted_max, s_obs - 1e-12, side="left")
    if exact:
        p, p_fwe = exceed / len(signs), fwe_exceed / len(signs)
    else:
        p, p_fwe = (1 + exceed) / (1 + len(signs)), (1 + fwe_exceed) / (1 + len(signs))
    return GroupTestResult(mean, t_obs, p, p_fwe, fdr(p), null_max, masker, n, exact, name,
                           statistic)


def clusters(
    stat: np.ndarray,
    significant: np.ndarray,
    masker: BrainMasker,
    atlas: Atlas | None = None,
    min_size: int = 1,
    connectivity: int = 26,
) -> pd.DataFrame:
    """Table of connected clusters of significant voxels, largest first.

    stat, significant: (n_voxels,) over ``masker``. Columns: cluster, size (voxels), volume_mm3,
    peak_stat, peak_x/y/z (MNI mm of the peak), peak_region (atlas region at the peak, "" if
    none), main_region and main_region_fraction (the atlas region holding most cluster voxels).
    connectivity: 6, 18 or 26 (face, edge, corner neighbours).
    """
    if connectivity not in (6, 18, 26):
        raise CortexmapError(f"connectivity must be 6, 18 or 26; got {connectivity}.")
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    vol = np.zeros(masker.mask.shape, dtype=bool)
    vol.flat[masker.indices[np.asarray(significant, bool)]] = True
    labels, n_lab = ndimage.label(vol, structure=structure)
    lab = labels.ravel()[masker.indices]
    xyz = masker.voxel_mm()
    region = None
    if atlas is not None:
        check_same_grid(atlas.img, masker.mask_img, "atlas", "mask")
        region = atlas.data.ravel()[masker.indices]
    voxel_mm3 = float(abs(np.linalg.det(masker.affine[:3, :3])))
    rows = []
    for c in range(1, n_lab + 1):
        members = np.flatnonzero(lab == c)
        if members.size < min_size:
            continue
        peak = members[np.argmax(stat[members])]
        row = {"size": int(members.size), "volume_mm3": members.size * voxel_mm3,
               "peak_stat": float(stat[peak]), "peak_x": xyz[peak, 0], "peak_y": xyz[peak, 1],
               "peak_z": xyz[peak, 2], "peak_region": "", "main_region": "",
               "main_region_fraction": 0.0}
        if region is not None:
            row["peak_region"] = atlas.names.get(int(region[peak]), "")
            labs, counts = np.unique(region[members], return_counts=True)
            named = labs != 0
            if named.any():
                best = np.argmax(np.where(named, counts, -1))
                row["main_region"] = atlas.names[int(labs[best])]
                row["main_region_fraction"] = counts[best] / members.size
        rows.append(row)
    cols = ["cluster", "size", "volume_mm3", "peak_stat", "peak_x", "peak_y", "peak_z",
            "peak_region", "main_region", "main_region_fraction"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows).sort_values("size", ascending=False, kind="stable")
    df.insert(0, "cluster", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)[cols]

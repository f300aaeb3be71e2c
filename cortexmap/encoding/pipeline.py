"""Encoding models of every subject of a dataset folder and their group maps (the science of the
``encode`` analysis, :mod:`cortexmap.analyses.encode`, which writes them out).

Features come from a .npy file (one feature space, rows = the dataset's conditions in order of
first appearance) or an .npz with one array per feature space. With one space every subject
gets a cross-validated ridge model per voxel; with 2-3 spaces the model is fit on all of them
(each scaled to unit total variance) and the variance is partitioned into unique and shared
parts; banded ridge (himalaya) is fit to every voxel of the atlas regions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import nibabel as nib
import numpy as np
import pandas as pd
from pydantic import Field

from cortexmap.brain.io import (
    Atlas,
    BrainData,
    BrainMasker,
)
from cortexmap.brain.stats import GroupTestResult
from cortexmap.config import Alpha, AnalysisConfig, Count, Scheduler, Seed
from cortexmap.encoding.banded import _scaled, fit_banded, variance_partition
from cortexmap.encoding.model import EncodingResult, fit_encoding, group_encoding
from cortexmap.errors import CortexmapError
from cortexmap.utils.ridge import DEFAULT_ALPHAS


class EncodeConfig(AnalysisConfig):
    """Encoding models of a dataset folder (phantom or real, see docs/encoding.md)."""

    dataset: str = Field(min_length=1, description="Dataset folder (load_dataset layout).")
    features: str = Field(min_length=1, description=".npy or .npz file of feature spaces.")
    n_folds: int = Field(5, ge=2)
    alphas: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: list(DEFAULT_ALPHAS), min_length=1)
    chunk_voxels: Count = 20000
    n_perm: Count = 5000
    alpha: Alpha = 0.05
    banded_iter: Count = 20
    scheduler: Scheduler = None
    n_workers: int | None = Field(None, ge=1)
    seed: Seed = 0

    def fit_scheduler(self) -> str | None:
        """The fit functions' scheduler: None here means in this process ("serial"), "local"
        a dask LocalCluster (None there)."""
        return {None: "serial", "local": None}.get(self.scheduler, self.scheduler)


def read_features(path: str | os.PathLike, n_conditions: int | None = None
                  ) -> dict[str, np.ndarray]:
    """{space: (n_stimuli, n_features)} from a .npy (one space) or .npz (one per key) file."""
    p = Path(path)
    if not p.exists():
        raise CortexmapError(f"Features file {p} does not exist.")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CortexmapError(f"{p} is not a .npy/.npz array file ({exc}); save features with "
                             "numpy.save or numpy.savez.") from exc
    if isinstance(loaded, np.ndarray):
        spaces = {p.stem: loaded}
    else:
        with loaded:
            spaces = {k: loaded[k] for k in loaded.files}
    if not 1 <= len(spaces) <= 3:
        raise CortexmapError(f"{p} holds {len(spaces)} arrays; give 1 to 3 feature spaces.")
    out = {}
    for name, x in spaces.items():
        x = np.asarray(x)
        if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
            raise CortexmapError(f"Feature space {name!r} in {p} must be numeric (n_stimuli, "
                                 f"n_features); got shape {x.shape}, dtype {x.dtype}.")
        x = x.reshape(len(x), -1).astype(np.float64)
        if n_conditions is not None and len(x) != n_conditions:
            raise CortexmapError(
                f"Feature space {name!r} has {len(x)} rows but the dataset has {n_conditions} "
                "conditions; give one row per condition, in the order of the condition tables."
            )
        if not np.isfinite(x).all():
            raise CortexmapError(f"Feature space {name!r} contains NaN/inf.")
        out[name] = x
    return out


def _common(subjects: list[BrainData]) -> tuple[BrainMasker, list[np.ndarray]]:
    """The mask shared by all subjects and, per subject, its columns of those voxels."""
    common = np.logical_and.reduce([s.masker.mask for s in subjects])
    if not common.any():
        raise CortexmapError("The subjects' masks share no voxel.")
    masker = BrainMasker(nib.Nifti1Image(common.astype(np.uint8), subjects[0].masker.affine))
    return masker, [np.searchsorted(s.masker.indices, masker.indices) for s in subjects]


def subject_runs(subject: BrainData, conditions: list[str], columns: np.ndarray) -> np.ndarray:
    """(n_runs, n_conditions, n_voxels) responses, or (n_conditions, n_voxels) with one run.

    Several measurements of a condition within a run are averaged."""
    runs = subject.runs if subject.runs is not None else np.zeros(len(subject.conditions))
    stack = []
    for r in pd.unique(runs):
        sel = runs == r
        data, cond = subject.data[sel][:, columns], subject.conditions[sel]
        missing = [c for c in conditions if c not in set(cond.tolist())]
        if missing:
            raise CortexmapError(f"{subject.subject} run {r} lacks condition(s) {missing[:3]}; "
                                 "every run needs every condition for encoding models.")
        stack.append(np.stack([data[cond == c].mean(0) for c in conditions]))
    return np.stack(stack) if len(stack) > 1 else stack[0]


@dataclass
class EncodeRun:
    """Per-subject results, group tests per map kind, tables."""

    subjects: list[EncodingResult]
    group: dict[str, GroupTestResult]
    tables: dict[str, pd.DataFrame]
    masker: BrainMasker
    findings: list = field(default_factory=list)
    config: EncodeConfig | None = None
    skipped: str = ""

    def add_to_report(self, report) -> None:
        sec = report.section(
            "Encoding models",
            "Cross-validated ridge encoding model per voxel (one SVD per fold serves every "
            "voxel and penalty; the penalty is chosen per voxel by leave-one-out error inside "
            "the training fold). Scores are on held-out stimuli; with repeated runs they are "
            "also divided by each voxel's noise ceiling. Group maps: sign-flip permutation test "
            "(max-statistic FWE) of the subjects' maps.")
        for kind, g in self.group.items():
            if not g.significant().any():
                sec.text(f"Group {kind}: no voxel is FWE-significant "
                         f"({g.n_subjects} subjects).")
                continue
            vals = np.where(g.significant(), g.mean, 0.0).astype(np.float32)
            sec.brain(g.masker.inverse_transform(vals, fill=0.0),
                      f"Group-mean {kind}, FWE-significant voxels only "
                      f"({int(g.significant().sum())} voxels).", title=kind)
        for key, caption in [("summary", "Per-subject scores (median and 95th percentile)."),
                             ("regions", "Median scores per atlas region and subject."),
                             ("partition", "Variance partitioning: median unique and shared "
                              "R² per atlas region (ridge fits of every union of spaces)."),
                             ("banded", "Banded ridge (himalaya) of every voxel of each "
                              "region: median joint R² and split R² of each space.")]:
            if key in self.tables and not self.tables[key].empty:
                sec.table(self.tables[key], caption)


def _region_table(values: pd.DataFrame, masker: BrainMasker, atlas: Atlas | None,
                  subject: str) -> pd.DataFrame:
    if atlas is None:
        return pd.DataFrame()
    rows = []
    for name in atlas.region_names:
        sel = atlas.region_mask(name, masker)
        if sel.any():
            rows.append({"subject": subject, "region": name, "voxels": int(sel.sum()),
                         **values[sel].median().to_dict()})
    return pd.DataFrame(rows)


def encode_dataset(
    subjects: list[BrainData], spaces: dict[str, np.ndarray], config: EncodeConfig,
    atlas: Atlas | None = None, progress: bool = True,
) -> EncodeRun:
    """Fit every subject, partition variance (2-3 spaces), group-test the maps."""
    conditions = subjects[0].condition_names
    masker, columns = _common(subjects)
    names = list(spaces)
    x = _design(spaces)
    label = "+".join(names)
    fit_kw = {"n_folds": config.n_folds, "alphas": tuple(config.alphas), "seed": config.seed}
    results, regions, partition, banded = [], [], [], []
    for s, cols in zip(subjects, columns, strict=True):
        y = subject_runs(s, conditions, cols)
        res = fit_encoding(x, y, mask=masker, name=label, subject=s.subject,
                           chunk_voxels=config.chunk_voxels, scheduler=config.fit_scheduler(),
                           n_workers=config.n_workers, progress=progress, **fit_kw)
        results.append(res)
        cols_df = pd.DataFrame({k: res.map(k) for k in ("r2", "r", "r2_norm", "r_norm")
                                if getattr(res, k) is not None})
        regions.append(_region_table(cols_df, masker, atlas, s.subject))
        if len(names) > 1:
            part = variance_partition(spaces, y, chunk_voxels=config.chunk_voxels, **fit_kw)
            partition.append(_region_table(part.filter(regex="^(unique|shared)_"), masker,
                                           atlas, s.subject))
            if atlas is not None:
                banded.append(_banded_regions(spaces, y, masker, atlas, s.subject, config))
    kinds = ["r2", "r"] + (["r2_norm"] if results[0].noise_ceiling is not None else [])
    group = {k: group_encoding(results, k, n_perm=config.n_perm, seed=config.seed)
             for k in kinds} if len(results) > 1 else {}
    tables = {"summary": pd.concat([r.summary() for r in results], ignore_index=True),
              "regions": pd.concat(regions, ignore_index=True),
              "partition": pd.concat(partition, ignore_index=True) if partition else
              pd.DataFrame(),
              "banded": pd.concat(banded, ignore_index=True) if banded else pd.DataFrame()}
    return EncodeRun(results, group, tables, masker, config=config)


def _design(spaces: dict[str, np.ndarray]) -> np.ndarray:
    """The features of one space, or of 2-3 spaces each scaled to unit total variance."""
    names = list(spaces)
    return spaces[names[0]] if len(names) == 1 else np.concatenate(
        [_scaled(spaces[k]) for k in names], axis=1)


def shuffled_scores(subjects: list[BrainData], spaces: dict[str, np.ndarray],
                    config: EncodeConfig, voxels: np.ndarray, seed: int = 0) -> np.ndarray:
    """The chance level of the scores: held-out R² of the same model fit to features whose
    condition rows are shuffled (one seeded permutation), on ``voxels``.

    voxels : bool (n_voxels,) over the subjects' common mask (e.g. the FWE-significant ones).
    Returns (n_subjects,) the median R² over those voxels per subject.
    """
    conditions = subjects[0].condition_names
    _, columns = _common(subjects)
    x = _design(spaces)
    x = x[np.random.default_rng(seed).permutation(len(x))]
    out = []
    for s, cols in zip(subjects, columns, strict=True):
        y = subject_runs(s, conditions, cols)[..., voxels]
        res = fit_encoding(x, y, n_folds=config.n_folds, alphas=tuple(config.alphas),
                           seed=config.seed, subject=s.subject, chunk_voxels=config.chunk_voxels,
                           progress=False)
        out.append(float(np.median(res.r2)))
    return np.asarray(out)


def _banded_regions(spaces, y, masker, atlas, subject, config) -> pd.DataFrame:
    """Banded ridge of every voxel of the atlas regions; median scores per region."""
    names = [n for n in atlas.region_names if atlas.region_mask(n, masker).any()]
    sel = np.logical_or.reduce([atlas.region_mask(n, masker) for n in names])
    res = fit_banded(spaces, y[..., sel], n_folds=config.n_folds, n_iter=config.banded_iter,
                     seed=config.seed)
    df = res.to_frame()
    which = np.empty(int(sel.sum()), dtype=object)
    for n in names:
        which[atlas.region_mask(n, masker)[sel]] = n
    df.insert(0, "region", which)
    out = df.groupby("region", sort=False).median().reset_index()
    out.insert(0, "subject", subject)
    return out

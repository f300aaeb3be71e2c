"""Group searchlight: every subject's searchlight (one Dask client for all), a sign-flip group
test per model, winner-take-all maps, and the tables built from them."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cortexmap.brain.crossnobis import crossnobis_searchlight
from cortexmap.brain.figures import winner_figure
from cortexmap.brain.io import BrainData
from cortexmap.brain.maps import assign_layers, model_maps, overlap_table, recovery_scores
from cortexmap.brain.roi import as_model_rdms
from cortexmap.brain.searchlight import SearchlightResult, searchlight
from cortexmap.brain.stats import GroupTestResult, clusters, group_test
from cortexmap.report import Finding
from cortexmap.utils.dask import close_client, get_client


@dataclass
class GroupSearchlight:
    """Per-subject searchlights, per-model group tests and the tables built from them."""

    subjects: list[SearchlightResult]
    group: dict[str, GroupTestResult]
    maps: dict[str, np.ndarray]
    tables: dict[str, pd.DataFrame]
    findings: list = field(default_factory=list)
    config: Any = None  # the settings of the run that produced it

    def add_to_report(self, report) -> None:
        sec = report.section(
            "Searchlight RSA", "Per-subject searchlight maps of every model RDM, a sign-flip "
            "permutation group test per voxel (max-statistic FWE), clusters of significant "
            "voxels and the winner-take-all layer map.")
        for name, g in self.group.items():
            sec.brain(_masked_mean(g), f"Group-mean searchlight correlation with {name}, "
                      "significant voxels (FWE) only.", title=name)
        names = list(self.group)
        masker = next(iter(self.group.values())).masker
        lab = np.zeros(masker.n_voxels, dtype=np.int16)
        for i, name in enumerate(names):
            lab[self.maps[name]] = i + 1
        if lab.any():
            sec.figure(winner_figure(masker.inverse_transform(lab), names),
                       "Winner-take-all map: each significant voxel coloured by its best model.")
        else:
            sec.text("No voxel is significant for any model, so there is no winner map.")
        g = next(iter(self.group.values()))
        alpha = getattr(self.config, "alpha", 0.05)
        p_min = min_sign_flip_p(g.n_subjects, len(g.null_max))
        if p_min > alpha:  # say it where the empty map is read, not only in a console warning
            sec.text(f"**This test could not find anything:** with {g.n_subjects} subjects the "
                     f"smallest possible sign-flip p is {p_min:.3g}, above alpha = {alpha:g}; "
                     "use more subjects or a larger alpha.")
        for key, caption in [("clusters", "Clusters of significant voxels per model (peak MNI "
                              "coordinates, size, atlas region)."),
                             ("assignment", "Layer -> region assignment (mean group r per "
                              "region)."),
                             ("overlap", "Overlap of the models' maps (Dice, Jaccard)."),
                             ("recovery", "Recovery of the planted truth (phantom).")]:
            if key in self.tables and not self.tables[key].empty:
                sec.table(self.tables[key], caption)


def min_sign_flip_p(n_subjects: int, n_perm: int) -> float:
    """The smallest p-value a sign-flip test of ``n_subjects`` can give: 1/2^n when every sign
    pattern is enumerated (2^n <= n_perm), else 1/(1 + n_perm)."""
    return 1 / 2**n_subjects if 2**n_subjects <= n_perm else 1 / (1 + n_perm)


def warn_min_p(n_subjects: int, n_perm: int, alpha: float) -> None:
    """Warn when no voxel can reach ``alpha``: the test cannot find anything, whatever the data."""
    p = min_sign_flip_p(n_subjects, n_perm)
    if p > alpha:
        warnings.warn(
            f"With {n_subjects} subject(s) and {n_perm} permutations the smallest possible "
            f"sign-flip p is {p:.3g} > alpha = {alpha:g}: no voxel can be significant, whatever "
            f"the data. Use more subjects (>= {math.ceil(math.log2(1 / alpha))} for alpha = "
            f"{alpha:g}) and permutations, or a larger alpha.", UserWarning, stacklevel=3)


def _masked_mean(g: GroupTestResult):
    vals = np.where(g.significant(), g.mean, 0.0).astype(np.float32)
    return g.masker.inverse_transform(vals, fill=0.0)


def group_searchlight(
    subjects: list[BrainData],
    models: Any,
    atlas=None,
    planted: dict[str, str] | None = None,
    radius_mm: float = 6.0,
    method: str = "spearman",
    metric: str = "correlation",
    threshold: float = 0.5,
    min_voxels: int = 10,
    n_perm: int = 5000,
    alpha: float = 0.05,
    correction: str = "fwe",
    statistic: str = "t",
    scheduler: str | None = None,
    client: Any = None,
    n_workers: int | None = None,
    dtype: str = "float64",
    seed: int = 0,
    progress: bool = True,
    noise: str = "shrinkage_diag",
) -> GroupSearchlight:
    """Searchlight every subject (one dask client shared by all), group-test each model.

    Tables: ``clusters`` (per model, of its winner-take-all significant map), ``assignment``
    (with an atlas), ``overlap`` between the models' significance maps, ``recovery`` (with
    ``planted``; the winner-take-all map of the planted model vs the region), ``dropped``.
    metric="crossnobis" runs :func:`cortexmap.brain.crossnobis.crossnobis_searchlight` on the
    single-run patterns with the noise precision ``noise``.
    """
    models = as_model_rdms(models, len(subjects[0].condition_names))
    warn_min_p(len(subjects), n_perm, alpha)
    own = None
    if client is None and scheduler != "serial":
        client = own = get_client(scheduler, n_workers=n_workers)
    try:
        sched = "serial" if client is None else None
        if metric == "crossnobis":
            results = [crossnobis_searchlight(
                s, models, radius_mm=radius_mm, method=method, noise=noise, threshold=threshold,
                min_voxels=min_voxels, scheduler=sched, client=client, progress=progress)
                for s in subjects]
        else:
            results = [searchlight(s, models, radius_mm=radius_mm, method=method, metric=metric,
                                   threshold=threshold, min_voxels=min_voxels, scheduler=sched,
                                   client=client, dtype=dtype, progress=progress)
                       for s in subjects]
    finally:
        close_client(own)
    group = {name: group_test(results, model=i, n_perm=n_perm, seed=seed, statistic=statistic,
                              name=name) for i, name in enumerate(models.names)}
    maps = model_maps(group, alpha, correction)
    masker = next(iter(group.values())).masker
    rows = []
    for name, g in group.items():
        df = clusters(g.mean, maps[name], masker, atlas)
        df.insert(0, "model", name)
        rows.append(df)
    tables = {"clusters": pd.concat(rows, ignore_index=True),
              # overlap of the plain significance maps (winner-take-all maps never overlap)
              "overlap": overlap_table(model_maps(group, alpha, correction,
                                                  winner_take_all=False)),
              # spheres without a value, and the subject's NaN / constant voxels dropped on load
              "dropped": pd.DataFrame([{"subject": r.subject, "centres": r.n_centres,
                                        **r.dropped, **{f"{k}_voxels": v for k, v in
                                                        s.dropped.items()}}
                                       for r, s in zip(results, subjects, strict=True)])}
    findings = []
    if atlas is not None:
        tables["assignment"] = assign_layers(group, atlas, alpha, correction)
    if atlas is not None and planted:
        rec = recovery_scores(maps, masker, atlas, planted)
        tables["recovery"] = rec
        findings.append(Finding(
            "Searchlight recovers every planted region (Dice >= 0.7)",
            bool((rec["dice"] >= 0.7).all()),
            "; ".join(f"{r.region}: Dice {r.dice:.2f}" for r in rec.itertuples()),
            analysis="brain", evidence="method-check",
            criterion="The significant searchlight map of each planted model overlaps its "
                      "planted region with Dice >= 0.7."))
    return GroupSearchlight(results, group, maps, tables, findings)

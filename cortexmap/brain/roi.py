"""ROI RSA: RDMs per subject and region, group RDMs, noise ceilings, model comparison.

All dissimilarities and comparisons come from the RSA core (:mod:`cortexmap.rsa`); this module
only cuts the brain data into regions and arranges the results in tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cortexmap.brain.io import Atlas, BrainData, check_conditions_match
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms
from cortexmap.rsa.noise_ceiling import noise_ceiling
from cortexmap.rsa.rdm import n_conditions_from_pairs


def as_model_rdms(models: Any, n_conditions: int | None = None, metric: str = "unknown") -> RDMs:
    """Model RDMs from an :class:`RDMs`, a dict name -> vector (n_pairs,) / matrix (n, n),
    or an ``.npz`` path (RDMs.save file or one array per name); checks the condition count."""
    from pathlib import Path


    if isinstance(models, (str, Path)):
        path = Path(models)
        try:
            models = RDMs.load(path)
        except CortexmapError:
            if not path.exists():
                raise
            import zipfile

            try:
                z = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise CortexmapError(
                    f"Model RDM file {path} cannot be read ({type(exc).__name__}: {exc}); give an "
                    ".npz from `cortexmap rdm` (RDMs.save) or with one RDM array per name."
                ) from exc
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise CortexmapError(
                    f"Model RDM file {path} is a bare .npy array (shape {np.shape(z)}); give an "
                    ".npz from `cortexmap rdm` (RDMs.save) or with one RDM array per name."
                ) from None
            with z:
                models = {k: z[k] for k in z.files}
    if isinstance(models, dict):
        if not models:
            raise CortexmapError("No model RDMs given; pass at least one name -> RDM.")
        vecs = []
        for name, v in models.items():
            v = np.asarray(getattr(v, "vectors", v), dtype=np.float64)
            if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 1:
                v = RDMs.from_matrices(v).vectors[0]
            if v.ndim != 1 and not (v.ndim == 2 and v.shape[0] == 1):
                raise CortexmapError(f"Model RDM {name!r} has shape {v.shape}; give one RDM.")
            vecs.append(v.ravel())
        sizes = {v.size for v in vecs}
        if len(sizes) != 1:
            raise CortexmapError("Model RDMs differ in size; all must cover the same conditions.")
        n = n_conditions_from_pairs(vecs[0].size, "model RDMs")
        models = RDMs(np.stack(vecs), n, list(models), metric)
    if not isinstance(models, RDMs):
        raise CortexmapError(
            f"Model RDMs must be RDMs, a dict or an .npz path; got {type(models).__name__}."
        )
    if n_conditions is not None and models.n_conditions != n_conditions:
        raise CortexmapError(
            f"The model RDMs cover {models.n_conditions} conditions but the brain data has "
            f"{n_conditions}; both must describe the same stimuli in the same order."
        )
    return models


def align_conditions(order: Sequence[str], models: RDMs) -> list[str]:
    """The condition order to use with ``models``: the models' own order when they carry
    condition labels (the brain data are reordered to match), else the data's order.
    Labels that differ between the two are an error naming them."""
    if models.conditions is None:
        return list(order)
    missing = [c for c in models.conditions if c not in set(order)]
    extra = [c for c in order if c not in set(models.conditions)]
    if missing or extra:
        raise CortexmapError(
            f"The model RDMs' conditions {missing[:5]} are not in the brain data, and the "
            f"data's {extra[:5]} are not in the models; label both with the same stimulus ids."
        )
    return list(models.conditions)


def roi_rdms(
    subjects: Sequence[BrainData],
    atlas: Atlas,
    metric: str = "correlation",
    rois: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    min_voxels: int = 5,
) -> dict[str, RDMs]:
    """One RDM per subject for each ROI.

    subjects: loaded subjects (same conditions). metric: any :func:`cortexmap.rsa.compute_rdms`
    metric; "crossnobis" uses the single-run observations and run labels (leave-one-run-out),
    the others average each condition over runs first. Returns ROI name -> RDMs with
    ``len == n_subjects`` (names = subject ids, conditions in the shared order).
    """
    if not subjects:
        raise CortexmapError("No subjects given.")
    order = list(conditions) if conditions is not None else check_conditions_match(list(subjects))
    rois = list(rois) if rois is not None else atlas.region_names
    out: dict[str, RDMs] = {}
    for roi in rois:
        vecs = []
        for s in subjects:
            sel = atlas.region_mask(roi, s.masker)
            if sel.sum() < min_voxels:
                raise CortexmapError(
                    f"ROI {roi!r} has {int(sel.sum())} usable voxel(s) in subject {s.subject} "
                    f"(fewer than min_voxels={min_voxels}); check the atlas and mask overlap."
                )
            if metric == "crossnobis":
                if s.runs is None or len(np.unique(s.runs)) < 2:
                    raise CortexmapError(
                        f"crossnobis needs at least 2 runs; subject {s.subject} has "
                        f"{0 if s.runs is None else len(np.unique(s.runs))}."
                    )
                rdm = compute_rdms(s.data[:, sel], metric="crossnobis", runs=s.runs,
                                   conditions=s.conditions)
                if rdm.conditions is not None and list(rdm.conditions) != order:
                    pos = {c: k for k, c in enumerate(rdm.conditions)}
                    rdm = rdm.subset_conditions([pos[c] for c in order])
            else:
                rdm = compute_rdms(s.condition_patterns(order)[:, sel], metric=metric)
            vecs.append(rdm.vectors[0])
        out[roi] = RDMs(np.stack(vecs), len(order), [s.subject for s in subjects], metric,
                        order)
    return out


def group_rdms(rdms_by_roi: dict[str, RDMs]) -> RDMs:
    """Mean RDM over subjects for each ROI (names = ROI names)."""
    first = next(iter(rdms_by_roi.values()))
    return RDMs(np.stack([r.vectors.mean(axis=0) for r in rdms_by_roi.values()]),
                first.n_conditions, list(rdms_by_roi), first.metric, first.conditions)


def roi_noise_ceilings(rdms_by_roi: dict[str, RDMs], method: str = "spearman") -> pd.DataFrame:
    """Leave-one-subject-out noise ceiling per ROI: columns roi, lower, upper."""

    rows = []
    for roi, r in rdms_by_roi.items():
        if len(r) < 2:  # a ceiling needs at least two subjects
            rows.append({"roi": roi, "lower": np.nan, "upper": np.nan})
            continue
        lo, up = noise_ceiling(r, method=method)
        rows.append({"roi": roi, "lower": float(lo), "upper": float(up)})
    return pd.DataFrame(rows)


def roi_rsa(
    subjects: Sequence[BrainData],
    atlas: Atlas,
    models: Any,
    metric: str = "correlation",
    method: str = "spearman",
    rois: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compare model RDMs with every ROI's subject RDMs.

    Returns tables ``per_subject`` (roi, subject, model, r), ``summary`` (roi, model, mean_r,
    sem, t, p (one-sample t-test over subjects, one-sided r > 0), rank within the ROI,
    noise_lower, noise_upper) and ``best`` (the top-ranked model per ROI).
    """
    order = check_conditions_match(list(subjects))
    models = as_model_rdms(models, len(order))
    order = align_conditions(order, models)
    by_roi = roi_rdms(subjects, atlas, metric=metric, rois=rois, conditions=order)
    ceil = roi_noise_ceilings(by_roi, method=method).set_index("roi")
    rows = []
    for roi, r in by_roi.items():
        sim = compare(r, models, method=method)  # (n_subjects, n_models)
        for si, subj in enumerate(r.names):
            for mi, model in enumerate(models.names):
                rows.append({"roi": roi, "subject": subj, "model": model, "r": sim[si, mi]})
    per_subject = pd.DataFrame(rows)
    g = per_subject.groupby(["roi", "model"], sort=False)["r"]
    summary = g.agg(mean_r="mean", sem="sem", n="count").reset_index()
    tt = g.apply(lambda x: stats.ttest_1samp(x, 0.0, alternative="greater")
                 if len(x) > 1 else (np.nan, np.nan))
    summary["t"] = [v[0] for v in tt.to_numpy()]
    summary["p"] = [v[1] for v in tt.to_numpy()]
    summary["rank"] = summary.groupby("roi")["mean_r"].rank(ascending=False, method="min")
    summary["noise_lower"] = summary["roi"].map(ceil["lower"])
    summary["noise_upper"] = summary["roi"].map(ceil["upper"])
    best = summary[summary["rank"] == 1].drop_duplicates("roi")[["roi", "model", "mean_r"]]
    return {"per_subject": per_subject, "summary": summary, "best": best.reset_index(drop=True)}

"""Encoding models of a dataset folder (``cortexmap run encode``, also ``cortexmap encode``).

Every subject gets a cross-validated ridge model per voxel from a feature table (one or 2-3
feature spaces); the subjects' maps get a sign-flip group test (max-statistic FWE); 2-3 spaces
are also partitioned (unique / shared R²) and fit by banded ridge per atlas region. The science
lives in :mod:`cortexmap.encoding`; this module follows the analysis contract
(:mod:`cortexmap.analyses.base`): it checks the inputs, writes the maps, tables, report and
provenance, and states one finding with its control.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from cortexmap.analyses.base import write_outputs
from cortexmap.brain.io import load_atlas, load_dataset, write_nifti
from cortexmap.encoding.pipeline import (
    EncodeConfig,
    EncodeRun,
    encode_dataset,
    read_features,
    shuffled_scores,
)
from cortexmap.report import Finding
from cortexmap.utils.io import prepare_output_dir

__all__ = ["EncodeConfig", "EncodeRun", "run_encode"]


def run_encode(config: EncodeConfig, outdir: str | os.PathLike, overwrite: bool = False,
               progress: bool = True) -> EncodeRun:
    """Encoding models of a dataset folder; writes maps, tables, report and provenance.

    Parameters
    ----------
    config : EncodeConfig
        The dataset folder (``load_dataset`` layout), the features file (.npy: one space,
        (n_conditions, n_features); .npz: 1-3 spaces), cross-validation and test settings.
    outdir : str or path
        Output folder: ``subjects/<sub>/{r2,r,r2_norm,r_norm,noise_ceiling,alpha}.nii.gz``,
        ``group/{mean,p_fwe}_<kind>.nii.gz``, the ``summary``, ``regions``, ``partition`` and
        ``banded`` tables (Parquet + CSV), ``report.html``, ``provenance.json``.
    overwrite, progress : bool
        Replace an earlier run's results; show progress bars.

    Returns
    -------
    EncodeRun
        Per-subject results, group tests, tables and the finding (with fewer than 2 subjects
        there is no group test: ``skipped`` says so and there is no finding).
    """
    root = Path(config.dataset)
    subjects = load_dataset(root)  # inputs are checked before the output folder exists
    spaces = read_features(config.features, len(subjects[0].condition_names))
    atlas_img, atlas_tsv = root / "atlas.nii.gz", root / "atlas.tsv"
    atlas = load_atlas(atlas_img, atlas_tsv) if atlas_img.exists() and atlas_tsv.exists() \
        else None
    out = prepare_output_dir(outdir, overwrite)
    run = encode_dataset(subjects, spaces, config, atlas, progress)
    if "r2" in run.group:
        run.findings = [_finding(run, subjects, spaces, config, atlas,
                                 phantom=(root / "truth.json").exists())]
    else:
        run.skipped = (f"{len(subjects)} subject: the group test of the encoding maps needs at "
                       "least 2 subjects, so no finding is stated.")
    files = {f"subjects/{res.subject}": partial(res.save, overwrite=True)
             for res in run.subjects}
    files |= {f"group/{stat}_{kind}.nii.gz": partial(write_nifti, img=g.img(stat))
              for kind, g in run.group.items() for stat in ("mean", "p_fwe")}
    write_outputs(run, out, "Encoding models", str(root), skip_empty=True, findings=False,
                  files=files, inputs={"dataset": root, "features": Path(config.features)})
    return run


def _finding(run: EncodeRun, subjects, spaces, config: EncodeConfig, atlas,
             phantom: bool) -> Finding:
    """Held-out prediction above chance: FWE-significant voxels of the group R² map whose
    median R² beats a fit to shuffled features (and, on a phantom, lie in its planted
    regions)."""
    group = run.group["r2"]
    sig = group.significant(config.alpha)
    n_sig = int(sig.sum())
    per_subject = np.array([np.median(r.r2[sig]) for r in run.subjects]) if n_sig else None
    criterion = (f"At least one voxel's group-mean held-out R² is FWE-significant (sign-flip, "
                 f"max-statistic, alpha {config.alpha}) and those voxels' median R² exceeds "
                 "that of the same model fit to features with shuffled condition rows")
    numbers = (f"{n_sig} of {group.masker.n_voxels} voxels FWE-significant "
               f"({group.n_subjects} subjects)")
    control = "shuffled features: not fit (no significant voxel)"
    ok = n_sig > 0
    if n_sig:
        chance = shuffled_scores(subjects, spaces, config, sig, seed=config.seed)
        ok = bool(np.median(per_subject) > np.median(chance))
        numbers += f"; median R² there {np.median(per_subject):.3f}"
        control = (f"the same voxels with shuffled features: median R² {np.median(chance):.3f} "
                   "(one seeded permutation of the condition rows)")
    if phantom:
        criterion += ", and most of them lie inside the phantom's planted regions"
        if n_sig and atlas is not None:
            inside = np.logical_or.reduce([atlas.region_mask(n, group.masker)
                                           for n in atlas.region_names])
            share = float(inside[sig].mean())
            ok = ok and share > 0.5
            numbers += f"; {share:.0%} of them inside the planted regions"
        elif n_sig:
            ok = False
            numbers += "; the phantom has no atlas to check them against"
    return Finding(
        "The features predict held-out responses: the group test finds voxels the encoding "
        "model explains better than chance", ok, numbers + ".", analysis="encode",
        evidence="method-check" if phantom else "real-data", criterion=criterion + ".",
        control=control)

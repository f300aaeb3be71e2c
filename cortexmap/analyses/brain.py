"""The brain runs on a dataset folder: a phantom from a network, ROI RSA, group searchlight.

ROI RSA and the searchlight follow the analysis contract (:mod:`cortexmap.analyses.base`):
each writes tables (Parquet + CSV), NIfTI maps, ``report.html`` and ``provenance.json`` into
its output folder. The phantom run writes a dataset in the ``load_dataset`` layout. The science
lives in :mod:`cortexmap.brain` (ROI RDMs, searchlight, group statistics, the phantom).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from cortexmap.analyses.base import write_outputs
from cortexmap.analyses.rdms import layer_rdms
from cortexmap.brain.group import GroupSearchlight, group_searchlight
from cortexmap.brain.io import BrainData, write_nifti
from cortexmap.brain.phantom import PhantomDataset, make_phantom, slab_mask
from cortexmap.brain.roi import as_model_rdms, group_rdms, roi_rdms, roi_rsa
from cortexmap.brain.searchlight import (
    SEARCHLIGHT_METHODS,
    SEARCHLIGHT_METRICS,
)
from cortexmap.brain.source import BrainDataset, resolve_brain
from cortexmap.config import (
    Alpha,
    AnalysisConfig,
    Count,
    ModelSpec,
    Scheduler,
    Seed,
    StimuliSource,
)
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding
from cortexmap.rsa import CompareMethod, RdmMetric, RDMs
from cortexmap.utils.io import prepare_output_dir, safe_filenames


def _models_for(dataset: Path, models: str | None, n_conditions: int) -> RDMs:
    path = Path(models) if models else dataset / "model_rdms.npz"
    if not path.exists():
        raise CortexmapError(
            f"No model RDMs: {path} does not exist. Pass --rdms FILE.npz (an RDMs file from "
            "`cortexmap rdm`, or one RDM vector/matrix per name)."
        )
    return as_model_rdms(path, n_conditions, metric="correlation")


def _dataset_of(config: RoiRsaConfig | SearchlightConfig, require_atlas: bool) -> BrainDataset:
    """The run's dataset folder and atlas, checked before any output (one policy:
    :func:`cortexmap.brain.resolve_brain`)."""
    dataset = resolve_brain(config.dataset, config.atlas, config.atlas_table,
                            require_atlas=require_atlas)
    if dataset is None:
        raise CortexmapError(
            "dataset must be a dataset folder; to run on a phantom, write one first "
            "(`cortexmap phantom OUT`) and pass that folder.")
    return dataset


def _planted(dataset: Path) -> dict[str, str] | None:
    return PhantomDataset.open(dataset).planted if (dataset / "truth.json").exists() else None


# ----------------------------------------------------------------------------------------------
# Phantom from a network
# ----------------------------------------------------------------------------------------------
class PhantomConfig(AnalysisConfig):
    """A phantom whose regions carry the RDMs of a network's layers on an image set.

    ``rdms``: an .npz of RDMs (RDMs.save file) used instead of a network; ``layers`` and
    ``regions`` pair up in order (layer i is planted in region i).
    """

    model: ModelSpec = "zoo:alexnet_sup_s0"
    layers: list[str] = Field(default_factory=lambda: ["conv1", "conv3", "conv5", "fc7"],
                              min_length=1, description="Layers planted, one per region.")
    regions: list[str] = Field(default_factory=lambda: ["V1", "LOC", "fusiform",
                                                        "parahippocampal"],
                               min_length=1, description="Regions of the phantom atlas.")
    stimuli: StimuliSource = "bundled"
    rdms: str | None = Field(None, description="RDM file (.npz) planted instead of a network.")
    # 6 subjects: the smallest sign-flip p (1/2^6 = 0.016) is below alpha = 0.05, so the
    # group searchlight on the phantom can find something (with 3 it is 1/8 = 0.125)
    n_subjects: Count = 6
    n_runs: Count = 2
    snr: float = Field(0.5, ge=0, description="Signal SD / noise SD per voxel (0: no signal).")
    resolution_mm: Literal[1, 2, 3] = 3
    smoothness_mm: float = Field(6.0, ge=0)
    radius_mm: float = Field(8.0, gt=0)
    slab: bool = False
    seed: Seed = 0

    @model_validator(mode="after")
    def _one_region_per_layer(self) -> PhantomConfig:
        if self.rdms is None and len(self.layers) != len(self.regions):
            raise ValueError(
                f"{len(self.layers)} layers {self.layers} for {len(self.regions)} regions "
                f"{self.regions}; give one region per layer")
        return self


def run_phantom(config: PhantomConfig, outdir: str | os.PathLike, overwrite: bool = False,
                progress: bool = True) -> PhantomDataset:
    """Write a phantom dataset planted with network layer RDMs (or the RDMs of a file)."""
    if config.rdms:
        models = RDMs.load(config.rdms)
        layers = list(models.names) if config.layers == PhantomConfig().layers else config.layers
        models = models.subset(layers)
    else:
        models = layer_rdms(config.model, config.layers, config.stimuli)
        layers = config.layers
    if len(layers) != len(config.regions):
        raise CortexmapError(
            f"{len(layers)} layers/RDMs {layers} for {len(config.regions)} regions "
            f"{config.regions}; give one region per layer."
        )
    plant = {r: models.subset([layer]) for r, layer in zip(config.regions, layers, strict=True)}
    return make_phantom(
        plant, outdir, n_subjects=config.n_subjects, n_runs=config.n_runs, snr=config.snr,
        resolution_mm=config.resolution_mm, smoothness_mm=config.smoothness_mm,
        radius_mm=config.radius_mm, mask=slab_mask(config.resolution_mm) if config.slab else None,
        conditions=models.conditions, seed=config.seed, overwrite=overwrite, progress=progress,
    )


# ----------------------------------------------------------------------------------------------
# ROI RSA
# ----------------------------------------------------------------------------------------------
class RoiRsaConfig(AnalysisConfig):
    """ROI RSA of a dataset folder against model RDMs (default: the phantom's planted RDMs)."""

    dataset: str = Field(min_length=1, description="Dataset folder (load_dataset layout).")
    rdms: str | None = Field(None, description="Model RDM file (default: the dataset's "
                             "model_rdms.npz).")
    atlas: str | None = None
    atlas_table: str | None = None
    metric: RdmMetric = "correlation"
    method: CompareMethod = "spearman"


@dataclass
class RoiRsaResult:
    tables: dict[str, pd.DataFrame]
    findings: list = field(default_factory=list)
    group: RDMs | None = None
    config: RoiRsaConfig | None = None

    def add_to_report(self, report) -> None:
        sec = report.section("ROI RSA", "Model RDMs compared with each ROI's subject RDMs; the "
                             "noise ceiling bounds what any model can reach.")
        sec.table(self.tables["best"], "Best model per ROI (highest mean correlation).")
        sec.table(self.tables["summary"], "Mean correlation over subjects per ROI and model, "
                  "one-sided t-test p, rank, and leave-one-subject-out noise ceiling.")
        if self.group is not None:
            import matplotlib.pyplot as plt

            mats = self.group.matrices()
            fig, axes = plt.subplots(1, len(mats), figsize=(3 * len(mats), 3), squeeze=False)
            for ax, m, name in zip(axes[0], mats, self.group.names, strict=True):
                ax.imshow(m, cmap="viridis")
                ax.set_title(name)
                ax.axis("off")
            sec.figure(fig, "Group-mean RDM of every ROI (rows, columns: conditions).")


def run_roi_rsa(config: RoiRsaConfig, outdir: str | os.PathLike, overwrite: bool = False,
                progress: bool = True) -> RoiRsaResult:
    """Load the dataset, compute ROI RDMs and compare them with the model RDMs."""
    dataset = _dataset_of(config, require_atlas=True)
    root = dataset.root
    out = prepare_output_dir(outdir, overwrite)
    brain = dataset.load()
    subjects, atlas = brain.subjects, brain.atlas
    if len(subjects) < 2:
        warnings.warn(
            f"{root} has {len(subjects)} subject: ROI RSA can rank the models but cannot test "
            "them (the t-test over subjects and the noise ceiling need at least 2 subjects); "
            "its p-values and ceilings are NaN.", UserWarning, stacklevel=2)
    models = _models_for(root, config.rdms, len(subjects[0].condition_names))
    tables = roi_rsa(subjects, atlas, models, metric=config.metric, method=config.method)
    grp = group_rdms(roi_rdms(subjects, atlas, metric=config.metric))
    tables["dropped_voxels"] = _dropped_table(subjects)
    findings = []
    planted = _planted(root)
    if planted:
        best = dict(zip(tables["best"]["roi"], tables["best"]["model"], strict=True))
        ok = [best.get(r) == m for r, m in planted.items()]
        findings.append(Finding(
            "ROI RSA ranks the planted layer first in every phantom region", all(ok),
            "; ".join(f"{r}: planted {m}, best {best.get(r)}" for r, m in planted.items()),
            analysis="brain", evidence="method-check",
            criterion="In every region of the phantom, the model RDM planted there has the "
                      "highest ROI RSA."))
    result = RoiRsaResult(tables, findings, grp, config)
    write_outputs(result, out, "ROI RSA", str(root), findings=False,
                  files={"group_rdms.npz": grp.save}, inputs={"dataset": root})
    return result


def _dropped_table(subjects: list[BrainData]) -> pd.DataFrame:
    return pd.DataFrame([{"subject": s.subject, "voxels_used": s.n_voxels, **s.dropped}
                         for s in subjects])


# ----------------------------------------------------------------------------------------------
# Group searchlight
# ----------------------------------------------------------------------------------------------
class SearchlightConfig(AnalysisConfig):
    """Searchlight of every subject, group sign-flip test per model, maps and tables."""

    dataset: str = Field(min_length=1, description="Dataset folder (load_dataset layout).")
    rdms: str | None = None
    atlas: str | None = None
    atlas_table: str | None = None
    radius_mm: float = Field(6.0, gt=0)
    method: Literal[SEARCHLIGHT_METHODS] = "spearman"
    metric: Literal[(*SEARCHLIGHT_METRICS, "crossnobis")] = "correlation"
    noise: Literal["none", "diag", "shrinkage_eye", "shrinkage_diag"] = "shrinkage_diag"
    threshold: float = Field(0.5, ge=0, le=1, description="Fraction of a sphere's voxels that "
                             "must be in the mask.")
    min_voxels: Count = 10
    n_perm: int = Field(5000, ge=1)  # 0 would make every p-value 1
    alpha: Alpha = 0.05
    correction: Literal["fwe", "fdr", "none"] = "fwe"
    statistic: Literal["mean", "t"] = "t"
    scheduler: Scheduler = None
    n_workers: int | None = Field(None, ge=1)
    dtype: Literal["float32", "float64"] = "float64"
    seed: Seed = 0


def run_searchlight(config: SearchlightConfig, outdir: str | os.PathLike,
                    overwrite: bool = False, progress: bool = True) -> GroupSearchlight:
    """Group searchlight of a dataset folder; writes maps, tables, report and provenance."""
    dataset = _dataset_of(config, require_atlas=False)
    root = dataset.root
    # --overwrite replaces the whole output: no map of an earlier run stays beside the new ones
    out = prepare_output_dir(outdir, overwrite, replace=True)
    brain = dataset.load()
    subjects, atlas = brain.subjects, brain.atlas
    models = _models_for(root, config.rdms, len(subjects[0].condition_names))
    res = group_searchlight(
        subjects, models, atlas=atlas, planted=_planted(root), radius_mm=config.radius_mm,
        method=config.method, metric=config.metric, threshold=config.threshold,
        min_voxels=config.min_voxels, n_perm=config.n_perm, alpha=config.alpha,
        correction=config.correction, statistic=config.statistic, scheduler=config.scheduler,
        n_workers=config.n_workers, dtype=config.dtype, seed=config.seed, progress=progress,
        noise=config.noise)
    res.config = config
    files: dict = {f"subjects/{r.subject}": partial(r.save, overwrite=True)
                   for r in res.subjects}
    names = safe_filenames(list(res.group), "model")
    for name, g in res.group.items():
        for kind in ("mean", "t", "p_fwe"):
            files[f"group/{kind}_{names[name]}.nii.gz"] = partial(write_nifti, img=g.img(kind))
    masker = next(iter(res.group.values())).masker
    lab = np.zeros(masker.n_voxels, dtype=np.int16)
    for i, name in enumerate(res.group):
        lab[res.maps[name]] = i + 1
    files["group/winner.nii.gz"] = partial(write_nifti, img=masker.inverse_transform(lab))
    write_outputs(res, out, "Searchlight RSA", str(root), findings=False, files=files,
                  inputs={"dataset": root})
    return res

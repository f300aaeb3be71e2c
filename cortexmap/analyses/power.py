"""Power analysis on the phantom (``cortexmap run power``, also ``cortexmap power``): how many
subjects does an RSA study need?

A network's layer RDMs (or the RDMs of a file) are planted in brain regions of simulated
subjects over a grid of SNR x subjects x runs x searchlight radius; ROI RSA and the group
searchlight are run on each phantom, and null phantoms (SNR 0) give the family-wise
false-positive rate. The science lives in :mod:`cortexmap.brain.power`; this module follows
the analysis contract (:mod:`cortexmap.analyses.base`). Its findings are method checks:
recovery of a planted truth, not a brain result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field

from cortexmap.analyses.rdms import layer_rdms
from cortexmap.brain.phantom import mni_mask, slab_mask
from cortexmap.brain.power import (
    PowerGrid,
    PowerResult,
    power_analysis,
    power_layout,
    write_power,
)
from cortexmap.config import Alpha, AnalysisConfig, Count, ModelSpec, Scheduler, Seed
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding, Report
from cortexmap.rsa import RDMs
from cortexmap.utils.io import prepare_output_dir

DEFAULT_LAYERS = ["conv1", "conv3", "conv5", "fc7"]


class PowerConfig(AnalysisConfig):
    """Phantom recovery over a grid of SNR, subjects, runs and searchlight radius."""

    model: ModelSpec = "zoo:alexnet_sup_s0"
    layers: list[str] = Field(default_factory=lambda: list(DEFAULT_LAYERS), min_length=1,
                              description="Layers planted, one per region (with rdms: the RDM "
                              "names to use, default all of the file's)")
    regions: list[str] = Field(
        default_factory=lambda: ["V1", "LOC", "fusiform", "parahippocampal"], min_length=1,
        description="Regions, one per layer")
    rdms: str | None = Field(None, description="RDMs file (.npz) planted instead of a network")
    snr: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.25, 0.35, 0.5, 1.0], min_length=1,
        description="SNRs (> 0; null phantoms at SNR 0 are added)")
    n_subjects: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=lambda: [4, 8, 12, 16], min_length=1, description="Subject counts")
    n_runs: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [2], min_length=1, description="Runs per subject")
    radius_mm: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [6.0], min_length=1, description="Searchlight radii (mm)")
    repetitions: Count = Field(2, description="Phantoms per grid cell")
    null_repetitions: int = Field(2, ge=0, description="Null phantoms (SNR 0) per runs x radius")
    mask: str = Field("slab", min_length=1, description="slab (3 mm occipito-temporal) | mni "
                      "(3 mm whole brain) | a mask file")
    n_perm: Count = Field(2000, description="Sign-flip permutations")
    statistic: Literal["t", "mean"] = Field(
        "t", description="Max-statistic of the searchlight's group test (FWE)")
    alpha: Alpha = 0.05
    target: float = Field(0.8, gt=0, le=1, description="Recovery target (fraction)")
    scheduler: Scheduler = None
    n_workers: int | None = Field(None, ge=1, description="Local dask workers")
    seed: Seed = 0

    def grid(self) -> PowerGrid:
        """The grid of :func:`cortexmap.brain.power.power_analysis`."""
        return PowerGrid(snr=tuple(self.snr), n_subjects=tuple(self.n_subjects),
                         n_runs=tuple(self.n_runs), radius_mm=tuple(self.radius_mm),
                         repetitions=self.repetitions, null_repetitions=self.null_repetitions)


@dataclass
class PowerRun:
    """Outputs of :func:`run_power`: the power result, its tables (cells, curve, needed,
    null) and findings."""

    config: PowerConfig
    result: PowerResult
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add_to_report(self, report: Report) -> None:
        self.result.add_to_report(report)


def planted_rdms(config: PowerConfig) -> RDMs:
    """The RDMs planted: the file's (all names, or ``layers`` when given) or the network's."""
    if not config.rdms:
        return layer_rdms(config.model, config.layers)
    models = RDMs.load(config.rdms)
    return models if config.layers == DEFAULT_LAYERS else models.subset(config.layers)


def _mask(spec: str):
    if spec in ("slab", "mni"):
        return {"slab": slab_mask, "mni": mni_mask}[spec](3)
    if not Path(spec).exists():
        raise CortexmapError(f"Mask {spec!r} is neither 'slab', 'mni' nor an existing mask "
                             "file; give one of them.")
    return spec


def run_power(config: PowerConfig, outdir: str | os.PathLike, overwrite: bool = False,
              progress: bool = True) -> PowerRun:
    """Recovery of planted RDMs over the config's grid; writes ``cells``, ``curve``,
    ``needed``, ``null`` (Parquet + CSV), ``power.png``, ``report.html`` and
    ``provenance.json`` into ``outdir``.

    The output folder is checked before the long work (a non-empty one needs ``overwrite``).
    """
    grid = config.grid()
    mask = _mask(config.mask)
    models = planted_rdms(config)
    layout = power_layout(models, list(config.regions), grid, mask)  # bad settings fail here
    prepare_output_dir(outdir, overwrite)
    sched = {None: "serial", "local": None}.get(config.scheduler, config.scheduler)
    res = power_analysis(models, list(config.regions), grid, mask=mask, alpha=config.alpha,
                         n_perm=config.n_perm, target=config.target, seed=config.seed,
                         scheduler=sched, n_workers=config.n_workers, progress=progress,
                         statistic=config.statistic, layout=layout)
    write_power(res, outdir, config={
        "model": None if config.rdms else config.model, "rdms": config.rdms,
        "layers": list(models.names), "regions": list(config.regions),
        "grid": grid.__dict__, "mask": config.mask, "alpha": config.alpha,
        "n_perm": config.n_perm, "statistic": config.statistic, "target": config.target,
        "seed": config.seed},
        overwrite=overwrite)
    tables = {name: getattr(res, name) for name in ("cells", "curve", "needed", "null")}
    return PowerRun(config, res, tables, list(res.findings))

"""The contract every analysis follows, and the one place it is written down in code.

An analysis is one module of :mod:`cortexmap.analyses` with

- a **config**: a subclass of :class:`AnalysisConfig` (pydantic; unknown fields are refused, a
  config is frozen, every bad value is one :class:`~cortexmap.errors.CortexmapError` naming the
  field, raised when the config is built, so before any output folder or work exists). Shared
  concepts use the shared field types and groups (:class:`ModelFields`, :class:`BrainFields`,
  :class:`DaskFields`, ``Seed``, ``StimuliSource``, ...) and the rsa vocabulary
  (``RdmMetric``, ``PatternMetric``, ``CompareMethod``);
- a **run**: ``run(config, outdir, overwrite=False, progress=True) -> result``, which checks its
  inputs, prepares ``outdir`` (:func:`~cortexmap.utils.io.prepare_output_dir`), does the work
  and ends with one call of :func:`write_outputs`: tables (Parquet + CSV), findings, extra files
  and figures, ``report.html`` and ``provenance.json``, each written atomically;
- a **result** (:class:`AnalysisResult`): ``config``, ``tables``, ``findings`` (each with its
  evidence class and pass criterion) and ``add_to_report(report)``;
- one :class:`Analysis` entry in the registry (``cortexmap.analyses.REGISTRY``), which the main
  job, the combined report and the ``cortexmap run NAME`` command iterate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from cortexmap.config import (
    Alpha,
    AnalysisConfig,
    BrainFields,
    BrainSource,
    Count,
    DaskFields,
    LayerNames,
    ModelFields,
    ModelSpec,
    Scheduler,
    Seed,
    StimuliSource,
)
from cortexmap.report import Finding, Report, findings_table
from cortexmap.report.figures import save_figure
from cortexmap.rsa import CompareMethod, PatternMetric, RdmMetric
from cortexmap.utils.io import write_bytes, write_table
from cortexmap.utils.provenance import write_provenance

__all__ = [
    "Alpha", "Analysis", "AnalysisConfig", "AnalysisResult", "BrainFields", "BrainSource",
    "CompareMethod", "Count", "DaskFields", "LayerNames", "ModelFields", "ModelSpec",
    "PatternMetric", "RdmMetric", "Scheduler", "Seed", "StimuliSource", "write_outputs",
]


@runtime_checkable
class AnalysisResult(Protocol):
    """What a run returns (each analysis's result dataclass has these attributes)."""

    config: AnalysisConfig
    tables: dict[str, pd.DataFrame]
    findings: list[Finding]

    def add_to_report(self, report: Report) -> None:
        """Add the analysis's sections (figures, tables) to ``report``; findings are added once
        by whoever assembles the report."""


Runner = Callable[..., Any]


@dataclass(frozen=True)
class Analysis:
    """One registry entry: the analysis's name (its ``cortexmap run NAME`` command and its
    config-file section, with ``-`` as ``_``), a title, its config class and run function.

    in_job: the main job (``cortexmap demo``) runs it; analyses that need a user's input (a
    dataset folder) are run on their own only. aliases: earlier command-line spellings of
    config fields, {field: ["--old-flag", ...]}.
    """

    name: str
    title: str
    config: type[AnalysisConfig]
    run: Runner
    in_job: bool = True
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @property
    def section(self) -> str:
        """The table of a TOML/YAML/JSON config file that holds this analysis's settings."""
        return self.name.replace("-", "_")

    def __call__(self, config: AnalysisConfig, outdir: str | os.PathLike,
                 overwrite: bool = False, progress: bool = True) -> AnalysisResult:
        return self.run(config, outdir, overwrite=overwrite, progress=progress)


#: An extra output file: its bytes, or a function that writes it to the path it is given (such
#: as ``RDMs.save``; every such writer of cortexmap writes atomically).
FileWriter = bytes | Callable[[Path], Any]


def write_outputs(
    result: AnalysisResult,
    outdir: str | os.PathLike,
    title: str | None,
    subtitle: str = "",
    *,
    table_files: Mapping[str, str] | None = None,
    skip_empty: bool = False,
    findings: bool = True,
    files: Mapping[str, FileWriter] | None = None,
    figures: Mapping[str, Any] | None = None,
    seed: int | None = None,
    inputs: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
) -> Path:
    """Write a finished analysis into its (prepared) output folder; every file atomically.

    In this order: each of ``result.tables`` as ``<name>.parquet`` + ``<name>.csv``; the
    findings as ``findings.parquet/.csv`` (:func:`~cortexmap.report.findings_table`); the extra
    ``files`` and the matplotlib ``figures`` (PNG, :func:`~cortexmap.report.figures.save_figure`),
    both keyed by their path relative to ``outdir``; ``report.html`` (a report titled ``title``
    with the result's sections and its findings); last ``provenance.json``, so a folder holding
    provenance is a finished one. The main job adds ``result.json`` (the stored result and its
    resume key) beside these.

    Parameters
    ----------
    result : AnalysisResult
        The analysis's result (config, tables, findings, add_to_report).
    outdir : str or path-like
        The output folder, already prepared by the run (before its work started).
    title, subtitle : str
        Of ``report.html``; ``title=None`` writes no report.
    table_files : mapping, optional
        {table name: file stem} where a table's file is not named like the table.
    skip_empty : bool
        Leave out tables with no rows.
    findings : bool
        Write the findings table.
    files : mapping, optional
        {relative path: bytes or writer(path)}: RDM files, images, NIfTI maps, subfolders.
    figures : mapping, optional
        {relative path: matplotlib figure}, saved as PNG and closed.
    seed : int, optional
        The seed recorded in the provenance (default: the config's ``seed``, if it has one).
    inputs, models : mapping, optional
        What the provenance checksums (name -> path or array) and the networks' weight records
        (see :func:`~cortexmap.utils.provenance.provenance`).

    Returns
    -------
    Path
        ``outdir``.
    """
    out = Path(outdir)
    stems = table_files or {}
    for name, df in result.tables.items():
        if len(df) or not skip_empty:
            write_table(df, out / stems.get(name, name))
    if findings:
        write_table(findings_table(result.findings), out / "findings")
    for rel, item in (files or {}).items():
        if isinstance(item, bytes):
            write_bytes(out / rel, item)
        else:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            item(out / rel)
    for rel, fig in (figures or {}).items():
        save_figure(fig, out / rel)
    if title is not None:
        report = Report(title, subtitle)
        result.add_to_report(report)
        report.findings(result.findings)
        report.write(out / "report.html")
    write_provenance(out, config=result.config,
                     seed=seed if seed is not None else getattr(result.config, "seed", None),
                     inputs=dict(inputs or {}), models=dict(models or {}))
    return out

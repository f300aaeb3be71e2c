"""The contract every analysis follows, and the one place it is written down in code.

An analysis is one module of :mod:`cortexmap.analyses` with

- a **config**: a subclass of :class:`AnalysisConfig` (pydantic; unknown fields are refused, a
  config is frozen, every bad value is one :class:`~cortexmap.errors.CortexmapError` naming the
  field, raised when the config is built, so before any output folder or work exists). Shared
  concepts use the shared field types and groups (:class:`ModelFields`, :class:`BrainFields`,
  :class:`DaskFields`, ``Seed``, ``StimuliSource``, ...) and the rsa vocabulary
  (``RdmMetric``, ``PatternMetric``, ``CompareMethod``);
- a **run**: ``run(config, outdir, overwrite=False, progress=True) -> result``, which writes its
  tables (Parquet + CSV), ``report.html`` and ``provenance.json`` into ``outdir``;
- a **result** (:class:`AnalysisResult`): ``config``, ``tables``, ``findings`` (each with its
  evidence class and pass criterion) and ``add_to_report(report)``;
- one :class:`Analysis` entry in the registry (``cortexmap.analyses.REGISTRY``), which the main
  job, the combined report and the ``cortexmap run NAME`` command iterate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
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
from cortexmap.report import Finding, Report
from cortexmap.rsa import CompareMethod, PatternMetric, RdmMetric

__all__ = [
    "Alpha", "Analysis", "AnalysisConfig", "AnalysisResult", "BrainFields", "BrainSource",
    "CompareMethod", "Count", "DaskFields", "LayerNames", "ModelFields", "ModelSpec",
    "PatternMetric", "RdmMetric", "Scheduler", "Seed", "StimuliSource",
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

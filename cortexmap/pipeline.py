"""The main job: every analysis on bundled defaults (or a user's config) into one report.

Each analysis runs into its own subfolder of the run folder (its tables, figures, report and
provenance); the combined ``report.html`` starts with a summary that says, for each published
finding, what kind of evidence it is (in-silico, method-check, real-data), its pass criterion and
whether this run met it. A finished analysis leaves ``result.json`` (findings, report sections,
resume key) and its tables as Parquet behind, so an interrupted job resumes with the analyses it
has not finished yet; nothing in a run folder is ever unpickled.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from cortexmap.config import build_config, read_config_file
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding, Report, findings_table
from cortexmap.report.store import RESULT_FILE, load_result, save_result
from cortexmap.utils.io import lock_output_dir, prepare_output_dir, write_table
from cortexmap.utils.provenance import checksum, write_provenance


@dataclass(frozen=True)
class Analysis:
    """Where an analysis lives: ``module`` holds ``config`` (pydantic class) and ``run``."""

    name: str
    title: str
    module: str
    config: str
    run: str

    def config_class(self) -> type[BaseModel]:
        return getattr(importlib.import_module(self.module), self.config)

    def runner(self):
        return getattr(importlib.import_module(self.module), self.run)


ANALYSES: dict[str, Analysis] = {a.name: a for a in [
    Analysis("center-periphery", "Center–periphery organization",
             "cortexmap.probes.center_periphery", "CenterPeripheryConfig",
             "run_center_periphery"),
    Analysis("synthesis", "Layer-orthogonalizing synthesis and residual mapping",
             "cortexmap.synthesis.analysis", "SynthesisConfig", "run_synthesis"),
    Analysis("orientation", "Orientation selectivity and ablation",
             "cortexmap.probes.orientation_analysis", "OrientationConfig", "run_orientation"),
    Analysis("lesion", "Kernel lesions", "cortexmap.probes.lesion_analysis", "LesionConfig",
             "run_lesion"),
    Analysis("contrast", "Image contrast", "cortexmap.probes.lesion_analysis", "ContrastConfig",
             "run_contrast"),
    Analysis("universal", "Universal dimensions", "cortexmap.universal.analysis",
             "UniversalConfig", "run_universal"),
]}

#: Settings of ``make demo``: the published analyses at sizes that finish in minutes on 2 cores.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "center-periphery": {},
    "synthesis": {},
    "orientation": {},
    "lesion": {},
    "contrast": {},
    "universal": {},
}


def _section_key(name: str) -> str:
    return name.replace("-", "_")


def analysis_config(
    name: str, file_values: dict[str, Any] | None = None, demo: bool = False
) -> BaseModel:
    """The config of analysis ``name``: demo settings (if ``demo``) overridden by file values."""
    if name not in ANALYSES:
        raise CortexmapError(
            f"Unknown analysis {name!r}; choose from: {', '.join(ANALYSES)}."
        )
    values = dict(DEMO_SETTINGS[name]) if demo else {}
    values.update(file_values or {})
    return build_config(ANALYSES[name].config_class(), values, source=f"[{_section_key(name)}]")


@dataclass
class JobResult:
    """What the main job produced: per-analysis results, all findings, timings, the report."""

    results: dict[str, Any]
    findings: list[Finding]
    timings: pd.DataFrame
    report_path: Path


def _input_checksums(config: dict[str, Any]) -> dict[str, str]:
    """Checksums of what an analysis reads besides its settings.

    The zoo (weights change with every retrain under the same names) and every existing file or
    folder the config names (user weights, images, NIfTI data): a saved result is reused only
    when these are unchanged too.
    """
    from cortexmap.models.zoo import zoo_dir

    here = Path.cwd().resolve()
    paths: dict[str, Path] = {"zoo": zoo_dir()}
    pending: list[Any] = [config]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending += list(value.values())
        elif isinstance(value, list):
            pending += value
        elif isinstance(value, str) and value and os.path.exists(value):
            path = Path(value).resolve()
            if path != here and path not in here.parents:  # never hash the whole working tree
                paths[value] = path
    return {name: checksum(path) for name, path in paths.items() if path.exists()}


def _run_one(name: str, cfg: BaseModel, out: Path, progress: bool, resume: bool):
    """Run one analysis, or reuse its saved result when it finished with the same config,
    cortexmap version and inputs (:func:`_input_checksums`)."""
    import cortexmap

    done = out / name / RESULT_FILE
    dump = cfg.model_dump(mode="json")
    key = {"config": dump, "version": cortexmap.__version__, "inputs": _input_checksums(dump)}
    key = json.loads(json.dumps(key))  # as it reads back from result.json
    if resume and done.exists():
        try:
            saved = load_result(done)
        except CortexmapError:  # unreadable: run the analysis again
            saved = None
        if saved is not None and saved.key == key:
            return saved, 0.0, True
    t0 = time.perf_counter()
    result = ANALYSES[name].runner()(cfg, out / name, overwrite=True, progress=progress)
    elapsed = time.perf_counter() - t0
    save_result(out / name, result, key)
    return result, elapsed, False


def run_job(
    outdir: str | os.PathLike,
    analyses: list[str] | None = None,
    config_file: str | os.PathLike | None = None,
    demo: bool = True,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = True,
    extra_sections=None,
) -> JobResult:
    """Run ``analyses`` (default: all) into ``outdir`` and write one combined ``report.html``.

    config_file: optional TOML/YAML/JSON with one table per analysis (``[center_periphery]``,
    ``[synthesis]``, ``[orientation]``, ``[lesion]``, ``[contrast]``, ``[universal]``) holding
    that analysis's config fields. ``demo`` starts from :data:`DEMO_SETTINGS`. ``resume`` reuses
    analyses that finished in an earlier, interrupted run of the same folder with the same
    config, cortexmap version and inputs (zoo weights, files the config names); the others
    run again.
    extra_sections: optional callable ``(report) -> list[Finding]`` adding sections first.
    """
    names = list(analyses) if analyses else list(ANALYSES)
    file_values = read_config_file(config_file) if config_file else {}
    unknown = sorted(set(file_values) - {_section_key(n) for n in ANALYSES})
    if unknown:  # a misspelt section would otherwise be ignored and the defaults run
        raise CortexmapError(
            f"Config file {config_file} has unknown section(s) {unknown}; valid sections: "
            f"{', '.join(_section_key(n) for n in ANALYSES)}."
        )
    configs = {
        n: analysis_config(n, file_values.get(_section_key(n)), demo=demo) for n in names
    }  # validate every config before any work starts
    out = Path(outdir)
    if not (resume and (out / "job.json").exists()):
        prepare_output_dir(out, overwrite)
    lock_output_dir(out)  # a second job into this folder refuses while this one runs
    write_provenance(out, config={n: c.model_dump(mode="json") for n, c in configs.items()},
                     seed=None)
    (out / "job.json").touch()
    report = Report("cortexmap: in-silico neurophysiology",
                    "Five published analyses on the zoo, bundled images and the phantom brain.")
    findings: list[Finding] = []
    if extra_sections is not None:
        findings.extend(extra_sections(report))
    results, rows = {}, []
    for n in names:
        result, seconds, reused = _run_one(n, configs[n], out, progress, resume)
        results[n] = result
        result.add_to_report(report)
        for f in result.findings:
            f.analysis = f.analysis or n
        findings.extend(result.findings)
        rows.append({"analysis": n, "seconds": round(seconds, 1), "resumed": reused})
    timings = pd.DataFrame(rows)
    write_table(timings, out / "timings")
    write_table(findings_table(findings), out / "findings")
    report.findings(findings)
    report.section("Run time", "Wall-clock seconds per analysis in this run (0 = reused "
                   "from an earlier, interrupted run).").table(timings, "Timings.")
    path = report.write(out / "report.html")
    return JobResult(results, findings, timings, path)

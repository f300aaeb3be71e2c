"""The main job: every analysis on bundled defaults (or a user's config) into one report.

Each analysis runs into its own subfolder of the run folder (its tables, figures, report and
provenance); the combined ``report.html`` starts with a summary that says, for each published
finding, what kind of evidence it is (in-silico, method-check, real-data), its pass criterion and
whether this run met it. A finished analysis leaves ``result.json`` (findings, report sections,
resume key) and its tables as Parquet behind, so an interrupted job resumes with the analyses it
has not finished yet; nothing in a run folder is ever unpickled.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import cortexmap
from cortexmap.analyses import REGISTRY, Analysis
from cortexmap.config import AnalysisConfig, build_config, read_config_file
from cortexmap.errors import CortexmapError
from cortexmap.models.zoo import zoo_dir
from cortexmap.report import Finding, Report, findings_table
from cortexmap.report.store import RESULT_FILE, load_result, save_result
from cortexmap.utils.io import lock_output_dir, prepare_output_dir, write_table
from cortexmap.utils.provenance import checksum, write_provenance

#: The analyses of the main job, by name (``cortexmap.analyses.REGISTRY``, in its order).
ANALYSES: dict[str, Analysis] = REGISTRY

#: Settings of ``make demo``: the published analyses at sizes that finish in minutes on 2 cores.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "center-periphery": {},
    "synthesis": {},
    "orientation": {},
    "lesion": {},
    "contrast": {},
    "universal": {"imagenet": 2},  # the zoo and two real ImageNet networks
    # the published analyses on real ImageNet networks (offline weight packages) and their
    # untrained twins; their own configs hold the CPU-sized defaults
    "orientation-imagenet": {},
    "center-periphery-imagenet": {},
    "contrast-imagenet": {},
    "synthesis-imagenet": {},
    # a few minutes: one ImageNet network and its twin, three zoo networks, 4 layers; without the
    # data the part is skipped and the report says how to get it
    "benchmark": {"max_imagenet": 1, "n_layers": 4, "n_boot": 100, "n_boot_variants": 100,
                  "if_missing": "skip", "download": False},
}


def analysis_config(
    name: str, file_values: dict[str, Any] | None = None, demo: bool = False
) -> AnalysisConfig:
    """The config of analysis ``name``: demo settings (if ``demo``) overridden by file values."""
    if name not in ANALYSES:
        raise CortexmapError(
            f"Unknown analysis {name!r}; choose from: {', '.join(ANALYSES)}."
        )
    values = dict(DEMO_SETTINGS.get(name, {})) if demo else {}
    values.update(file_values or {})
    return build_config(ANALYSES[name].config, values, source=f"[{ANALYSES[name].section}]")


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


def _run_one(name: str, cfg: AnalysisConfig, out: Path, progress: bool, resume: bool):
    """Run one analysis, or reuse its saved result when it finished with the same config,
    cortexmap version and inputs (:func:`_input_checksums`). Returns (result, its stored form,
    seconds, reused)."""

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
            return saved, saved, 0.0, True
    t0 = time.perf_counter()
    result = ANALYSES[name].run(cfg, out / name, overwrite=True, progress=progress)
    elapsed = time.perf_counter() - t0
    return result, save_result(out / name, result, key), elapsed, False


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
    """Run ``analyses`` (default: the main job's) into ``outdir``; write one ``report.html``.

    config_file: optional TOML/YAML/JSON with one table per analysis (``[center_periphery]``,
    ``[synthesis]``, ``[orientation]``, ``[lesion]``, ``[contrast]``, ``[universal]``) holding
    that analysis's config fields. ``demo`` starts from :data:`DEMO_SETTINGS`. ``resume`` reuses
    analyses that finished in an earlier, interrupted run of the same folder with the same
    config, cortexmap version and inputs (zoo weights, files the config names); the others
    run again.
    extra_sections: optional callable ``(report) -> list[Finding]`` adding sections first.
    """
    names = list(analyses) if analyses else [n for n, a in ANALYSES.items() if a.in_job]
    file_values = read_config_file(config_file) if config_file else {}
    sections = [a.section for a in ANALYSES.values()]
    unknown = sorted(set(file_values) - set(sections))
    if unknown:  # a misspelt section would otherwise be ignored and the defaults run
        raise CortexmapError(
            f"Config file {config_file} has unknown section(s) {unknown}; valid sections: "
            f"{', '.join(sections)}."
        )
    configs = {
        n: analysis_config(n, file_values.get(n.replace("-", "_")), demo=demo) for n in names
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
        result, stored, seconds, reused = _run_one(n, configs[n], out, progress, resume)
        results[n] = result
        stored.add_to_report(report)  # the sections as stored: rendered once
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

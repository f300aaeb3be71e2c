"""Core commands: `cortexmap demo` (the main job) and `cortexmap report` (rebuild a report)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cortexmap.analyses.overview import layer_overview
from cortexmap.cli.common import finding_line
from cortexmap.errors import CortexmapError
from cortexmap.pipeline import run_job
from cortexmap.report import Report
from cortexmap.report.store import RESULT_FILE, load_result

console = Console()

DEMO_HELP = """Run every analysis on the bundled defaults (zoo networks, bundled images, phantom
brain) and write one HTML report with a summary of the findings: each with its evidence class
(in-silico, method-check, real-data), pass criterion and verdict.

An interrupted demo resumes: analyses that finished are reused (use --no-resume to redo them).

Examples:

  cortexmap demo --out runs/demo

  cortexmap demo --only orientation,lesion --out runs/probes

  cortexmap demo --config examples/all.toml --out runs/mine --overwrite
"""

REPORT_HELP = """Rebuild the combined HTML report of a run folder from the saved results of its
analyses (each subfolder's result.json and tables; nothing is unpickled), e.g. to merge runs.

Examples:

  cortexmap report runs/demo

  cortexmap report runs/demo runs/extra --out runs/combined.html
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command("demo", help=DEMO_HELP)
    def demo(
        out: Path = typer.Option(Path("runs/demo"), help="Output folder."),
        only: str | None = typer.Option(None, help="Comma-separated analyses to run."),
        config: Path | None = typer.Option(
            None, help="TOML/YAML/JSON with one table per analysis."),
        overview_model: str = typer.Option("zoo:alexnet_sup_s0", help="Model of the overview."),
        resume: bool = typer.Option(True, help="Reuse analyses finished by an earlier run."),
        overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    ) -> None:
        result = run_job(
            out, analyses=only.split(",") if only else None, config_file=config, demo=True,
            overwrite=overwrite, resume=resume,
            extra_sections=lambda report: layer_overview(report, overview_model),
        )
        for f in result.findings:
            console.print(f"[bold]{f.analysis}[/] " + finding_line(f))
        console.print(f"report: {result.report_path}")

    @app.command("report", help=REPORT_HELP)
    def report(
        runs: list[Path] = typer.Argument(..., help="Run folders (of `demo` or `run X`)."),
        out: Path | None = typer.Option(None, help="HTML file (default: first run's folder)."),
        title: str = typer.Option("cortexmap report", help="Report title."),
    ) -> None:
        rep = Report(title)
        found = []
        for run in runs:
            saved = sorted(run.glob(RESULT_FILE)) + sorted(run.glob(f"*/{RESULT_FILE}"))
            if not saved:
                old = sorted(run.glob("result.pkl")) + sorted(run.glob("*/result.pkl"))
                hint = (" It holds result.pkl files of an older cortexmap, which are not read "
                        "(unpickling can run code); run the job again to re-create them."
                        if old else "")
                raise CortexmapError(
                    f"{run} holds no {RESULT_FILE} (in it or its subfolders); point to a folder "
                    f"written by `cortexmap demo`.{hint}"
                )
            for file in saved:
                result = load_result(file)
                result.add_to_report(rep)
                found.extend(result.findings)
        rep.findings(found)
        path = rep.write(out or runs[0] / "report.html")
        console.print(f"report: {path}")

"""`cortexmap run benchmark`: networks x layers against real brain and behaviour RDMs."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexmap.cli.common import console, print_findings

EXAMPLES = """
Needs the real data (the 92-image and Algonauts-78 sets): ../shared/data, the user cache,
$CORTEXMAP_DATA or --data-dir; downloaded with checksums when online. See docs/real_data.md.

Examples:

  cortexmap run benchmark --out runs/benchmark

  cortexmap run benchmark --networks mobilenet_v2,mobilenet_v2:untrained --targets hIT,IT \\
      --n-boot 200 --out runs/bench_small

  cortexmap run benchmark --config examples/benchmark.toml --out runs/b --overwrite
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("benchmark", help="Model-vs-brain benchmark on real data: every layer of "
                     "every network against human and monkey IT, judgements, EVC and IT, with "
                     "noise ceilings and dual-bootstrap CIs; real-data universal-dimension and "
                     "residual-method tests." + EXAMPLES)
    def benchmark(
        out: Path = typer.Option(Path("runs/benchmark"), help="Output folder."),
        config: Path | None = typer.Option(None, help="TOML/YAML/JSON file of BenchmarkConfig."),
        networks: str | None = typer.Option(None, help="Comma-separated model specs."),
        targets: str | None = typer.Option(None, help="Comma-separated: hIT,mIT,judgement,EVC,IT"),
        n_layers: int | None = typer.Option(None, help="Layers per network."),
        n_boot: int | None = typer.Option(None, help="Dual-bootstrap samples."),
        data_dir: str | None = typer.Option(None, help="Folder holding the data sets."),
        seed: int | None = typer.Option(None),
        overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    ) -> None:
        from cortexmap.analyses.benchmark import BenchmarkConfig, run_benchmark
        from cortexmap.config import load_config

        cfg = load_config(
            BenchmarkConfig, config, section="benchmark",
            networks=networks.split(",") if networks else None,
            targets=targets.split(",") if targets else None, n_layers=n_layers, n_boot=n_boot,
            data_dir=data_dir, seed=seed,
        )
        result = run_benchmark(cfg, out, overwrite=overwrite)
        print_findings(result.findings)
        console.print(f"report: {out / 'report.html'}")

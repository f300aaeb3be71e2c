"""CLI for analysis 3: ``cortexmap run orientation`` (orientation selectivity, Ukita 2020)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cortexmap.cli.common import print_findings, split_list

console = Console()

RUN_HELP = """Analysis 3: orientation tuning of units to gratings, its growth over training \
epochs, its relation to generalization across the zoo, and the causal test by ablating the most \
selective units (accuracy drop and shift invariance of higher layers vs random and \
least-selective controls). Defaults: zoo:alexnet_sup_s0, its checkpoints, the whole zoo.

Options may come from a JSON or YAML file (--config) with OrientationConfig fields; flags given \
on the command line override it. Re-running into the same folder with the same settings resumes \
the per-model sweeps.

Examples:

  cortexmap run orientation --out runs/orientation

  cortexmap run orientation --layers conv1,conv2,conv3 --ablation-layer conv1 --ks 2,4,8 \\
      --out runs/orientation_conv1

  cortexmap run orientation --model zoo:vgg_sup_s0 --no-dynamics --networks none \\
      --out runs/orientation_vgg

  cortexmap run orientation --config examples/orientation.toml --out runs/o3 --overwrite
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("orientation", help=RUN_HELP)
    def run_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        config: Path = typer.Option(None, help="TOML/YAML/JSON file of OrientationConfig fields"),
        model: str = typer.Option(None, help="model spec (default zoo:alexnet_sup_s0)"),
        layers: str = typer.Option(None, help="comma-separated layers to tune (default: all "
                                              "spatial top-level layers)"),
        unit: str = typer.Option(None, help="center (default) or mean over positions"),
        step: float = typer.Option(None, help="orientation step in deg (default 7.5)"),
        sfs: str = typer.Option(None, help="spatial frequencies, cycles/image (default 4,8,12)"),
        shuffles: int = typer.Option(None, "--n-shuffles",
                                     help="shuffles of the null, config n_shuffles (default 200)"),
        dynamics: bool = typer.Option(None, "--dynamics/--no-dynamics",
                                      help="selectivity over epoch checkpoints (default yes)"),
        networks: str = typer.Option(None, help="comma-separated models to compare, 'none' to "
                                                "skip (default: the whole zoo)"),
        ablation: bool = typer.Option(None, "--ablation/--no-ablation",
                                      help="ablation experiment (default yes)"),
        ablation_layer: str = typer.Option(None, help="layer to ablate (default: 2nd tuned)"),
        ks: str = typer.Option(None, help="numbers of ablated units (default 4,8)"),
        n_random: int = typer.Option(None, help="random-ablation draws (default 20)"),
        shifts: str = typer.Option(None, help="shift sizes in px (default 2,4,8)"),
        n_test: int = typer.Option(None, help="procedural test images (default 1000)"),
        seed: int = typer.Option(None, help="random seed (default 0)"),
        scheduler: str = typer.Option(None, help="dask scheduler for the model sweeps"),
        overwrite: bool = typer.Option(False, help="replace results in a non-empty OUT"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from cortexmap.config import load_config
        from cortexmap.probes.orientation_analysis import OrientationConfig, run_orientation

        cfg = load_config(
            OrientationConfig, config, section="orientation", model=model,
            layers=split_list(layers), unit=unit, orientation_step=step,
            spatial_freqs=split_list(sfs, float), n_shuffles=shuffles, dynamics=dynamics,
            networks=split_list(networks), ablation=ablation, ablation_layer=ablation_layer,
            ks=split_list(ks, int), n_random=n_random, shifts=split_list(shifts, int),
            n_test=n_test,
            seed=seed, scheduler=scheduler,
        )
        res = run_orientation(cfg, out, overwrite=overwrite, progress=progress)
        console.print(res.tables["tuning_summary"].to_string(index=False))
        if "ablation_accuracy" in res.tables:
            console.print(res.tables["ablation_accuracy"].to_string(index=False))
        print_findings(res.findings)
        console.print(f"orientation results in {out} (report: {out / 'report.html'})")

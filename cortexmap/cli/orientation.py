"""CLI for analysis 3: ``cortexmap run orientation`` (orientation selectivity, Ukita 2020)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cortexmap.cli.common import (
    ACCURACY_HELP,
    CLASS_NAMES_HELP,
    IMAGES_HELP,
    LABELS_HELP,
    print_findings,
    split_list,
    test_set_flags,
)

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

  cortexmap run orientation --model mobilenet_v2 --images photos/ --labels labels.csv \
      --class-names imagenet --no-dynamics --networks none --out runs/o_mobilenet

  cortexmap run orientation --model mobilenet_v2 --accuracy agreement --no-dynamics \
      --networks mobilenet_v2,mobilenet_v2:untrained --out runs/o_proxy
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
        sfs: str = typer.Option(None, help="spatial frequencies in --sf-unit (default "
                                           "0.0625,0.125,0.1875 cycles/pixel)"),
        sf_unit: str = typer.Option(None, "--sf-unit", help="cycles/pixel (default) or "
                                                             "cycles/image"),
        shuffles: int = typer.Option(None, "--n-shuffles",
                                     help="shuffles of the null, config n_shuffles (default 200)"),
        dynamics: bool = typer.Option(None, "--dynamics/--no-dynamics",
                                      help="selectivity over epoch checkpoints (default yes)"),
        dynamics_model: str = typer.Option(None, help="zoo network or folder of checkpoints "
                                                      "(epoch_N.pt) for the dynamics"),
        dynamics_arch: str = typer.Option(None, help="architecture of the checkpoint files"),
        networks: str = typer.Option(None, help="comma-separated models (SPEC or "
                                                "SPEC=WEIGHTS) to compare, 'none' to skip "
                                                "(default: the whole zoo)"),
        ablation: bool = typer.Option(None, "--ablation/--no-ablation",
                                      help="ablation experiment (default yes)"),
        ablation_layer: str = typer.Option(None, help="layer to ablate (default: 2nd tuned)"),
        ks: str = typer.Option(None, help="numbers of ablated units (default 4,8)"),
        n_random: int = typer.Option(None, help="random-ablation draws (default 20)"),
        shifts: str = typer.Option(None, help="shift sizes in px (default 2,4,8)"),
        n_test: int = typer.Option(None, help="procedural test images (default 1000)"),
        images: str = typer.Option(None, "--images", help=IMAGES_HELP),
        labels: str = typer.Option(None, "--labels", help=LABELS_HELP),
        class_names: str = typer.Option(None, "--class-names", help=CLASS_NAMES_HELP),
        accuracy: str = typer.Option(None, "--accuracy", help=ACCURACY_HELP),
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
            spatial_freqs=split_list(sfs, float), sf_unit=sf_unit, n_shuffles=shuffles,
            dynamics=dynamics, dynamics_model=dynamics_model, dynamics_arch=dynamics_arch,
            networks=split_list(networks), ablation=ablation, ablation_layer=ablation_layer,
            ks=split_list(ks, int), n_random=n_random, shifts=split_list(shifts, int),
            n_test=n_test, **test_set_flags(images, labels, class_names, accuracy),
            seed=seed, scheduler=scheduler,
        )
        res = run_orientation(cfg, out, overwrite=overwrite, progress=progress)
        console.print(res.tables["tuning_summary"].to_string(index=False))
        if "ablation_accuracy" in res.tables:
            console.print(res.tables["ablation_accuracy"].to_string(index=False))
        print_findings(res.findings)
        console.print(f"orientation results in {out} (report: {out / 'report.html'})")

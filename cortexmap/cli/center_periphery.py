"""CLI for analysis 1: ``cortexmap run center-periphery`` and ``cortexmap receptive-fields``."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from cortexmap.cli.common import print_findings, split_list
from cortexmap.errors import CortexmapError

console = Console()

RUN_HELP = """Analysis 1 (Mohsenzadeh et al. 2020): central-bias and background-selective units \
against foveal and peripheral brain regions.

Per convolutional layer: receptive fields of every feature-map position, a background \
selectivity index from object-only / background-only renderings (foreground masks), two unit \
groups, their RDMs, and the 2x2 unit-group x region RSA table with permutation p-values, noise \
ceilings and a bootstrap CI of the crossover interaction. Defaults: zoo:alexnet_sup_s0, the 16 \
bundled photographs with masks, a phantom brain with a planted crossover \
(fusiform <- central units, parahippocampal <- background units).

Options may come from a JSON or YAML file (--config) of CenterPeripheryConfig fields; flags \
given on the command line override it.

Examples:

  cortexmap run center-periphery --out runs/center_periphery

  cortexmap run center-periphery --phantom null --out runs/cp_null

  cortexmap run center-periphery --model alexnet --layers features.2,features.5,features.12 \\
      --selection threshold --threshold 0.3 --out runs/cp_alexnet

  cortexmap run center-periphery --stimuli my_images/ --masks-dir my_masks/ \\
      --brain my_fmri/ --foveal-region LOC --peripheral-region PPA --out runs/cp_real
"""

RF_HELP = """Receptive-field centre, size and eccentricity of every position of conv layers.

Method "auto" composes kernel/stride/padding when the layers form a chain (checked against \
the measured gradient support) and measures input gradients otherwise.

Examples:

  cortexmap receptive-fields zoo:alexnet_sup_s0 --layers conv1,conv3,conv5

  cortexmap receptive-fields resnet18 --layers layer1,layer2 --method gradient --out rf.csv
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("center-periphery", help=RUN_HELP)
    def run_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        config: Path = typer.Option(
            None, help="TOML/YAML/JSON file of CenterPeripheryConfig fields"),
        model: str = typer.Option(None, help="model spec (default zoo:alexnet_sup_s0)"),
        weights: Path = typer.Option(None, help="local weights for the model"),
        arch: str = typer.Option(None, help="architecture of a state_dict checkpoint"),
        layers: str = typer.Option(None, help="comma-separated conv layers (default: all)"),
        stimuli: str = typer.Option(None, help="'bundled' (default) or an image folder"),
        masks_dir: Path = typer.Option(None, help="folder of foreground masks (one per image)"),
        groups: str = typer.Option(
            None, help="two of central,peripheral,background,object (default central,background)"
        ),
        central_radius: float = typer.Option(None, help="RF eccentricity of central units (0.35)"),
        peripheral_radius: float = typer.Option(None, help="eccentricity beyond which units are "
                                                "peripheral (default: central radius)"),
        selection: str = typer.Option(None, help="top_fraction (default) or threshold"),
        threshold: float = typer.Option(None, help="|BSI| threshold (default 0.2)"),
        top_fraction: float = typer.Option(None, help="fraction of units (default 0.25)"),
        equal_sizes: bool = typer.Option(None, "--equal-sizes/--no-equal-sizes",
                                         help="subsample groups to equal size (default yes)"),
        exclusive: bool = typer.Option(None, "--exclusive/--no-exclusive",
                                       help="drop units in both groups (default yes)"),
        rf_method: str = typer.Option(None, help="auto (default), analytic or gradient"),
        brain: str = typer.Option(None, help="'phantom' (default) or a dataset folder"),
        atlas: Path = typer.Option(None, help="ROI label image (default DATASET/atlas.nii.gz)"),
        atlas_table: Path = typer.Option(None, help="ROI names table (default DATASET/atlas.tsv)"),
        foveal_region: str = typer.Option(None, help="foveal ROI (default fusiform)"),
        peripheral_region: str = typer.Option(None, help="peripheral ROI (parahippocampal)"),
        phantom: str = typer.Option(None, help="crossover (default), same or null"),
        phantom_geometry: str = typer.Option(None, help="groups (default), masks or aperture"),
        snr: float = typer.Option(None, help="phantom signal-to-noise ratio (default 0.5)"),
        n_perm: int = typer.Option(None, help="condition permutations (default 1000)"),
        n_boot: int = typer.Option(None, help="bootstrap samples (default 1000)"),
        bootstrap: str = typer.Option(None, help="conditions (default) or subjects"),
        method: str = typer.Option(None, help="RDM comparison (default spearman)"),
        seed: int = typer.Option(None, help="random seed (default 0)"),
        overwrite: bool = typer.Option(False, help="replace results in a non-empty OUT"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from cortexmap.config import load_config
        from cortexmap.probes.center_periphery import CenterPeripheryConfig, run_center_periphery

        cfg = load_config(
            CenterPeripheryConfig, config, section="center_periphery", model=model,
            weights=str(weights) if weights else None,
            arch=arch, layers=split_list(layers), stimuli=stimuli,
            masks_dir=str(masks_dir) if masks_dir else None, groups=split_list(groups),
            central_radius=central_radius, peripheral_radius=peripheral_radius,
            selection=selection, threshold=threshold, top_fraction=top_fraction,
            equal_sizes=equal_sizes, exclusive=exclusive, rf_method=rf_method, brain=brain,
            atlas=str(atlas) if atlas else None,
            atlas_table=str(atlas_table) if atlas_table else None,
            foveal_region=foveal_region, peripheral_region=peripheral_region, phantom=phantom,
            phantom_geometry=phantom_geometry, phantom_snr=snr, n_perm=n_perm, n_boot=n_boot,
            bootstrap=bootstrap, compare_method=method, seed=seed,
        )
        progress = progress and not os.environ.get("CORTEXMAP_NO_PROGRESS")
        res = run_center_periphery(cfg, out, overwrite=overwrite, progress=progress)
        cols = ["layer", "interaction", "ci_low", "ci_high", "p_perm", "significant"]
        console.print(res.tables["interaction"][cols].to_string(index=False))
        print_findings(res.findings)
        console.print(f"results in {out} (report: {out / 'report.html'})")

    @app.command("receptive-fields", help=RF_HELP)
    def rf_cmd(
        model: str = typer.Argument(..., help="model spec: zoo:NAME, torchvision name, file"),
        layers: str = typer.Option(None, help="comma-separated conv layers (default: all)"),
        method: str = typer.Option("auto", help="auto, analytic or gradient"),
        input_size: int = typer.Option(None, help="input side in px (default: the model's)"),
        weights: Path = typer.Option(None, help="local weights for the model"),
        arch: str = typer.Option(None, help="architecture of a state_dict checkpoint"),
        out: Path = typer.Option(None, "--out", "-o", help="write the table (.csv/.parquet)"),
        overwrite: bool = typer.Option(False, help="replace an existing --out file"),
    ) -> None:
        import pandas as pd

        from cortexmap.models import default_conv_layers, input_size_of, load
        from cortexmap.probes.receptive_field import receptive_fields
        from cortexmap.utils.io import check_output_file, write_table

        net = load(model, weights=weights, arch=arch)
        size = input_size or input_size_of(net)
        names = ([s.strip() for s in layers.split(",") if s.strip()] if layers
                 else default_conv_layers(net, size))
        frames, rows = [], []
        for name in names:
            rf = receptive_fields(net, name, size, method=method)
            frames.append(rf.to_frame())
            ecc = rf.eccentricity()
            rows.append(f"{name:<16} grid {rf.grid[0]}x{rf.grid[1]:<4} size "
                        f"{rf.size[..., 0].max():>6.1f} px  stride {rf.jump[0]:>5.1f} px  "
                        f"eccentricity {ecc.min():.2f}-{ecc.max():.2f}  ({rf.method})")
        typer.echo("\n".join(rows))  # plain lines: no wrapping of the aligned columns
        if out is not None:
            if out.suffix not in (".csv", ".parquet"):
                raise CortexmapError(f"--out must end in .csv or .parquet; got {out.name}.")
            check_output_file(out.with_suffix(".csv"), overwrite)
            write_table(pd.concat(frames, ignore_index=True), out.with_suffix(""))
            console.print(f"table in {out.with_suffix('.csv')} and .parquet")

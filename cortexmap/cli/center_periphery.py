"""``cortexmap receptive-fields``: receptive fields of conv layers (``cortexmap run
center-periphery`` is generated from its config, see :mod:`cortexmap.cli.run`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cortexmap.errors import CortexmapError
from cortexmap.models import default_conv_layers, input_size_of, load
from cortexmap.probes.receptive_field import receptive_fields
from cortexmap.utils.io import check_output_file, write_table

console = Console()

RF_HELP = """Receptive-field centre, size and eccentricity of every position of conv layers.

Method "auto" composes kernel/stride/padding when the layers form a chain (checked against \
the measured gradient support) and measures input gradients otherwise.

Examples:

  cortexmap receptive-fields zoo:alexnet_sup_s0 --layers conv1,conv3,conv5

  cortexmap receptive-fields resnet18 --layers layer1,layer2 --method gradient --out rf.csv
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
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

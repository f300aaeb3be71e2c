"""`cortexmap run universal`: universal dimensions across networks and brain alignment."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexmap.cli.common import console, print_findings

EXAMPLES = """
Examples:

  cortexmap run universal --out runs/universal

  cortexmap run universal --networks zoo:alexnet_sup_s0,zoo:vgg_sup_s0,zoo:resnet_sup_s0 \\
      --n-dims 20 --scheduler local --out runs/universal_small

  cortexmap run universal --config examples/universal.toml --out runs/u --overwrite
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("universal", help="Universal dimensions across networks and their brain "
                     "alignment (Chen & Bonner)." + EXAMPLES)
    def universal(
        out: Path = typer.Option(Path("runs/universal"), help="Output folder."),
        config: Path | None = typer.Option(None, help="TOML/YAML/JSON file of UniversalConfig."),
        networks: str | None = typer.Option(None, help="Comma-separated model specs."),
        n_dims: int | None = typer.Option(None, help="Principal dimensions per network."),
        n_images: int | None = typer.Option(None, help="Natural images (bundled crops)."),
        brain: str | None = typer.Option(None, help="'phantom' or a dataset folder."),
        scheduler: str | None = typer.Option(
            None, help="Dask: 'local' (LocalCluster), an address, or slurm/pbs/sge."),
        seed: int | None = typer.Option(None),
        overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    ) -> None:
        from cortexmap.config import load_config
        from cortexmap.universal.analysis import UniversalConfig, run_universal

        cfg = load_config(
            UniversalConfig, config, section="universal",
            networks=networks.split(",") if networks else None, n_dims=n_dims,
            n_images=n_images, brain=brain, scheduler=scheduler, seed=seed,
        )
        result = run_universal(cfg, out, overwrite=overwrite)
        print_findings(result.findings)
        console.print(f"report: {out / 'report.html'}")

"""CLI for training and the zoo: ``cortexmap train``, ``train-zoo``, ``zoo list``, ``zoo card``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cortexmap.errors import CortexmapError
from cortexmap.models.zoo import list_zoo, model_card
from cortexmap.train import TrainConfig, train
from cortexmap.train.recipes import build_zoo

console = Console()

TRAIN_HELP = """Train a small network on the procedural object dataset.

Checkpoints go to OUT/checkpoints/epE.pt at the chosen epochs, the resume point to OUT/last.pt;
run the same command again after an interruption and it continues from the last finished epoch.

Examples:

  cortexmap train --arch alexnet --epochs 8 --checkpoint-epochs 0,1,2,4,8 --out runs/alex

  cortexmap train --arch resnet --objective simclr --epochs 4 --seed 1 --out runs/res_ssl

  cortexmap train --arch vit --epochs 2 --images-per-epoch 2048 --out runs/quick --no-resume
"""


def _epochs(text: str) -> list[int]:
    try:
        return sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError as exc:
        raise CortexmapError(
            f"--checkpoint-epochs must be comma-separated integers like 0,1,2,4; got {text!r}."
        ) from exc


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    zoo_app = typer.Typer(help="The bundled zoo of trained networks.", no_args_is_help=True)
    app.add_typer(zoo_app, name="zoo")

    @app.command("train", help=TRAIN_HELP)
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, history)."),
        arch: str = typer.Option("alexnet", help="alexnet | vgg | resnet | vit"),
        objective: str = typer.Option("supervised", help="supervised | simclr | untrained"),
        epochs: int = typer.Option(8, min=0),
        images_per_epoch: int = typer.Option(10240, min=1, help="Fresh images per epoch."),
        batch_size: int = typer.Option(128, min=2),
        lr: float = typer.Option(2e-3),
        weight_decay: float = typer.Option(5e-4),
        seed: int = typer.Option(0, help="Initialisation / shuffling seed."),
        data_seed: int = typer.Option(0, help="Seed of the procedural image stream."),
        checkpoint_epochs: str = typer.Option("", help="e.g. 0,1,2,4,8"),
        threads: int = typer.Option(2, help="torch threads"),
        resume: bool = typer.Option(True, "--resume/--no-resume"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from pydantic import ValidationError


        try:
            cfg = TrainConfig(
                arch=arch, objective=objective, epochs=epochs, images_per_epoch=images_per_epoch,
                batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                data_seed=data_seed, checkpoint_epochs=_epochs(checkpoint_epochs),
                num_threads=threads,
            )
        except ValidationError as exc:
            raise CortexmapError(f"Invalid training option: {exc.errors()[0]['msg']}.") from exc
        res = train(cfg, out, resume=resume, progress=progress)
        last = res.history.iloc[-1]
        console.print(f"trained {arch} ({objective}) -> {out}/final.pt; "
                      f"val accuracy {last['val_acc']:.3f}; {res.train_seconds:.0f} s")

    @app.command("train-zoo")
    def train_zoo_cmd(
        names: list[str] = typer.Argument(None, help="Zoo names (default: all recipes)."),
        workdir: Path = typer.Option(Path("runs/zoo_train"), help="Training runs (resumable)."),
        zoo_dir: Path = typer.Option(None, help="Output zoo folder (default: the package's)."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Train and package the bundled zoo (same as `python scripts/train_zoo.py`)."""

        build_zoo(names or None, workdir, zoo_dir, progress=progress)

    @zoo_app.command("list")
    def zoo_list() -> None:
        """List zoo networks with objective, epochs, checkpoints and test accuracy."""

        levels = ("100%", "50%", "10%", "1%")
        table = Table(title="cortexmap zoo (test accuracy by contrast)")
        table.add_column("name (use zoo:NAME)", no_wrap=True)
        for col in ("arch", "objective", "epochs", "checkpoints", *levels):
            table.add_column(col)
        for e in list_zoo():
            acc = e.test_accuracy
            table.add_row(
                e.name, e.arch, e.objective + ("+probe" if e.linear_probe else ""),
                str(e.epochs), ",".join(map(str, e.checkpoints)) or "-",
                *(f"{acc[k]:.2f}" if k in acc else "-" for k in levels),
            )
        console.print(table)

    @zoo_app.command("card")
    def zoo_card(name: str = typer.Argument(..., help="Zoo name, e.g. alexnet_sup_s0")) -> None:
        """Print a zoo network's model card (Markdown)."""

        console.print(model_card(name), markup=False, highlight=False)

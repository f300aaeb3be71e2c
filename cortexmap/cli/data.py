"""`cortexmap data`: where the real data sets are looked for, and fetching them."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexmap.cli.common import console
from cortexmap.datasets import FETCHERS, search_dirs
from cortexmap.datasets.algonauts78 import SOURCE as ALG
from cortexmap.datasets.fetch import problems
from cortexmap.datasets.kriegeskorte92 import SOURCE as K92
from cortexmap.errors import CortexmapError

HELP = """Real reference data (the 92-image set and Algonauts-78): list where they are looked
for and whether an intact copy is there, or fetch them (download with checksums when online).

Examples:

  cortexmap data where

  cortexmap data fetch

  cortexmap data fetch kriegeskorte92 --data-dir ~/brain-data
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    data_app = typer.Typer(help=HELP, no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("where", help="The folders searched, in order, and what each holds.")
    def where(data_dir: Path | None = typer.Option(None, help="An explicit folder first.")):
        sources = {"kriegeskorte92": K92, "algonauts78": ALG}
        for folder in search_dirs(data_dir):
            for name in FETCHERS:
                here = folder / name
                if here.is_dir():
                    bad = problems(here, sources[name].checksums())
                    state = "intact" if not bad else f"{len(bad)} problem(s): {bad[0]}"
                else:
                    state = "absent"
                console.print(f"{here}: {state}")

    @data_app.command("fetch", help="Find or download the data sets and verify them.")
    def fetch(
        names: list[str] = typer.Argument(None, help="kriegeskorte92, algonauts78 (default: "
                                                     "both)."),
        data_dir: Path | None = typer.Option(None, help="Use (and download into) this folder."),
    ) -> None:
        for name in names or list(FETCHERS):
            if name not in FETCHERS:
                raise CortexmapError(f"Unknown data set {name!r}; choose from "
                                     f"{', '.join(FETCHERS)}.")
            data = FETCHERS[name](data_dir, size=64)
            console.print(f"{name}: {len(data.stimuli)} images, {len(data.rdms)} RDMs, "
                          f"in {data.path}")

"""CLI for models: ``cortexmap layers`` and ``cortexmap extract``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cortexmap.errors import CortexmapError
from cortexmap.models import (
    ActivationStore,
    Extractor,
    center_disk,
    image_mask,
    imagenet_networks,
    input_size_of,
    list_layers,
    load,
    model_card,
    periphery_ring,
)
from cortexmap.models.weights import OFFLINE_WEIGHTS
from cortexmap.stimuli import FolderImages, load_bundled
from cortexmap.stimuli.masks import read_mask_file

console = Console()

LAYERS_HELP = """List a model's layers with their output shapes for one input size.

Examples:

  cortexmap layers zoo:alexnet_sup_s0

  cortexmap layers googlenet --input-size 224

  cortexmap layers timm:resnet18 --leaves

  cortexmap layers my_net.pt --arch resnet18
"""

EXTRACT_HELP = """Extract activations of chosen layers into a zarr activation store.

Batches stream to disk (memory stays bounded by one batch). If the run is
interrupted, run the same command again: it resumes where it stopped. A complete
store is never replaced without --overwrite.

Examples:

  cortexmap extract zoo:alexnet_sup_s0 --layers conv3,fc7 --images bundled --out acts.zarr

  cortexmap extract mobilenet_v2 --layers features.3,features.8 --images ./stimuli --out a.zarr

  cortexmap extract mobilenet_v2:untrained --layers features.8 --out b.zarr --pooling mean

  cortexmap extract zoo:alexnet_sup_s0 --layers conv2 --out cp.zarr --unit-mask center:0.3

  cortexmap extract zoo:alexnet_sup_s0 --layers conv2 --out r.zarr --unit-mask periphery:0.6:1
"""


MODEL_HELP = ("torchvision name (its ImageNet weights), efficientnet_lite0, NAME:untrained "
              "(random), timm:NAME, zoo:NAME or a file.")


def _load_model(model: str, weights: Path | None, arch: str | None, input_size: int | None):
    m = load(model, weights=weights, arch=arch)
    if input_size is not None:
        p = m.cortexmap_preprocessing
        # keep the model's resize/crop ratio (e.g. 256/224) at the new size
        resize = None if p.resize is None else round(p.resize * input_size / p.size)
        m.cortexmap_preprocessing = dataclasses.replace(
            p, size=input_size, resize=None if resize is None else max(input_size, resize)
        )
    return m


def parse_unit_mask(text: str):
    """'center:0.3' -> center_disk(0.3); 'periphery:0.6[:0.9]' -> periphery_ring(0.6, 0.9);
    'NAME=PATH.png' -> image_mask read from a file (model-input size)."""

    if "=" in text:
        name, _, path = text.partition("=")

        return image_mask(read_mask_file(path), name=name)
    kind, *vals = text.split(":")
    try:
        nums = [float(v) for v in vals]
    except ValueError as exc:
        raise CortexmapError(f"Bad --unit-mask {text!r}: numbers expected after ':'.") from exc
    if kind == "center" and len(nums) == 1:
        return center_disk(nums[0])
    if kind == "periphery" and len(nums) in (1, 2):
        return periphery_ring(*nums)
    raise CortexmapError(
        f"Bad --unit-mask {text!r}; use center:RADIUS, periphery:INNER[:OUTER] or NAME=MASK.png "
        "(radii as fractions of half the image side)."
    )


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command("layers", help=LAYERS_HELP)
    def layers_cmd(
        model: str = typer.Argument(..., help=MODEL_HELP),
        input_size: int = typer.Option(None, "--input-size", help="Input side in pixels."),
        weights: Path = typer.Option(None, help="Local state_dict file to load."),
        arch: str = typer.Option(None, help="Architecture of a state_dict checkpoint."),
        leaves: bool = typer.Option(False, "--leaves", help="Only leaf modules (no containers)."),
    ) -> None:
        m = _load_model(model, weights, arch, input_size)
        size = input_size or input_size_of(m)
        infos = list_layers(m, input_size=size, leaves_only=leaves)
        table = Table(title=f"{m.cortexmap_name} — layers for a {size}x{size} input")
        for col in ("layer", "type", "output shape", "units"):
            table.add_column(col, justify="right" if col == "units" else "left")
        for info in infos:
            shape = " x ".join(map(str, info.shape))
            calls = f" (called {info.calls}x)" if info.calls > 1 else ""
            table.add_row(info.name, info.kind + calls, shape, f"{info.n_units:,}")
        console.print(table)

    @app.command("networks")
    def networks_cmd(
        name: str = typer.Argument(None, help="Show one network's full model card."),
    ) -> None:
        """Real ImageNet networks installed here (offline weight packages, hub cache)."""
        import json


        if name is not None:
            console.print_json(json.dumps(model_card(name), default=str))
            return
        installed = imagenet_networks()
        table = Table(title="Real ImageNet networks (spec NAME; random twin NAME:untrained)")
        for col in ("spec", "network", "input", "licence", "installed"):
            table.add_column(col)
        for spec in dict.fromkeys([*OFFLINE_WEIGHTS, *installed]):
            card = model_card(spec)
            table.add_row(spec, card["title"], f"{card['input_size']} px", card["licence"],
                          "yes" if spec in installed else f"no: {card.get('install', '')}")
        console.print(table)

    @app.command("extract", help=EXTRACT_HELP)
    def extract_cmd(
        model: str = typer.Argument(..., help=MODEL_HELP),
        layers: str = typer.Option(..., "--layers", help="Comma-separated layer names."),
        images: str = typer.Option("bundled", "--images", help="Image folder or 'bundled'."),
        out: Path = typer.Option(..., "--out", help="Output zarr store (folder)."),
        pooling: str = typer.Option("none", help="none | mean | max | center."),
        batch_size: int = typer.Option(32, "--batch-size", help="Stimuli per batch and chunk."),
        unit_mask: list[str] = typer.Option(
            None, "--unit-mask", help="center:R, periphery:INNER[:OUTER] or NAME=mask.png."
        ),
        weights: Path = typer.Option(None, help="Local state_dict file to load."),
        arch: str = typer.Option(None, help="Architecture of a state_dict checkpoint."),
        input_size: int = typer.Option(None, "--input-size", help="Override the input side."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        m = _load_model(model, weights, arch, input_size)
        pp = m.cortexmap_preprocessing
        load_size = pp.resize or pp.size
        if images == "bundled":
            stim = load_bundled(size=load_size)
        else:
            stim = FolderImages(images, size=load_size)  # lazy: one batch in memory
        masks = [parse_unit_mask(t) for t in unit_mask] if unit_mask else None
        ex = Extractor(m, layers, pooling=pooling, unit_masks=masks, batch_size=batch_size)
        if out.exists() and not overwrite:
            old = ActivationStore(out, allow_incomplete=True)
            if old.complete:
                raise CortexmapError(
                    f"Output store {out} already exists and is complete; pass --overwrite to "
                    "recompute it or choose another --out."
                )
            console.print(f"resuming {out}: {old.progress_text()}")
        try:
            store = ex.to_store(stim, out, overwrite=overwrite, progress=progress)
        except KeyboardInterrupt:
            if out.exists():
                done = ActivationStore(out, allow_incomplete=True).progress_text()
                console.print(f"interrupted ({done}); run the same command again to resume.")
            raise
        table = Table(title=f"{store.path} ({len(store)} stimuli, model {store.model})")
        table.add_column("array")
        table.add_column("shape")
        for name in store.layers:
            table.add_row(name, " x ".join(map(str, store.array(name).shape)))
        console.print(table)

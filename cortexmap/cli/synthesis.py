"""``cortexmap synthesize MODEL``: the synthesis analysis with the model as an argument and
the phantom mapping off (``cortexmap run synthesis`` is generated from its config)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
from cortexmap.cli.common import print_findings, split_list
from cortexmap.config import load_config

console = Console()

SYNTHESIZE_HELP = """Synthesize images whose layer RDMs are mutually uncorrelated.

Optimizes N images through MODEL so that the correlation-distance RDMs of the chosen layers \
decorrelate (loss: mean squared correlation between every pair of layer RDMs), and writes the \
PNG images, their layer RDMs, the layer x layer RDM correlation for synthesized vs natural \
images, the optimization curve and report.html.

Interrupted? Run the same command again: it resumes from OUT/checkpoint.pt (raise --steps to \
extend a finished run).

Examples:

  cortexmap synthesize zoo:alexnet_sup_s0 --out runs/synth

  cortexmap synthesize mobilenet_v2 --size 96 --steps 300 --out runs/synth_mobilenet

  cortexmap synthesize googlenet:untrained --layers inception3a,inception4a,inception5b \\
      --n-images 16 --size 128 --steps 500 --calibrate-bn --out runs/synth_googlenet

  cortexmap synthesize my_net.pt --arch resnet18 --layers layer1,layer2,layer3,layer4 \\
      --param pixel --tv 0.05 --out runs/synth_mine --mapping
"""

def _config(path: Path | None, **flags):
    flags["layers"] = split_list(flags.get("layers"))
    return load_config(SynthesisConfig, path, section="synthesis", **flags)


def _run(config, out: Path, overwrite: bool, progress: bool) -> None:
    res = run_synthesis(config, out, overwrite=overwrite, progress=progress)
    console.print(res.tables["orthogonality"].to_string(index=False))
    if res.mapping is not None:
        console.print(res.tables["mapping_summary"].to_string(index=False))
    print_findings(res.findings)
    console.print(f"results in {out} (report: {out / 'report.html'})")


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    def common(
        layers: str | None,
        n_images: int | None,
        size: int | None,
        input_size: int | None,
        steps: int | None,
        lr: float | None,
        param: str | None,
        jitter: int | None,
        tv: float | None,
        seed: int | None,
        device: str | None,
        natural: str | None,
        resume: bool | None,
        calibrate_bn: bool | None,
    ) -> dict:
        return dict(layers=layers, n_images=n_images, image_size=size, input_size=input_size,
                    steps=steps, lr=lr, parameterization=param, jitter=jitter, tv_weight=tv,
                    seed=seed, device=device, natural=natural, resume=resume,
                    calibrate_batchnorm=calibrate_bn)

    @app.command("synthesize", help=SYNTHESIZE_HELP)
    def synthesize_cmd(
        model: str = typer.Argument(..., help="model spec: mobilenet_v2, googlenet (ImageNet "
                                   "weights), NAME:untrained, zoo:NAME, timm:NAME, file"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        layers: str = typer.Option(None, help="comma-separated layer names (>= 2)"),
        n_images: int = typer.Option(None, "--n-images", "-n", help="images (default 16)"),
        size: int = typer.Option(None, help="image size in px (default: the model's)"),
        input_size: int = typer.Option(None, help="resize images to this before the model"),
        steps: int = typer.Option(None, help="optimization steps (default 500)"),
        lr: float = typer.Option(None, help="Adam learning rate (default 0.05)"),
        param: str = typer.Option(None, help="fourier (default) or pixel"),
        jitter: int = typer.Option(None, help="max random shift per step in px (default 4)"),
        tv: float = typer.Option(None, help="total-variation weight (default 0)"),
        seed: int = typer.Option(None, help="random seed (default 0)"),
        device: str = typer.Option(None, help="cpu (default), cuda or auto"),
        natural: str = typer.Option(None, help="'bundled' or a folder of natural images"),
        weights: Path = typer.Option(None, help="local weights for the model"),
        arch: str = typer.Option(None, help="architecture of a state_dict checkpoint"),
        mapping: bool = typer.Option(False, "--mapping/--no-mapping",
                                     help="also map layers on the phantom brain"),
        resume: bool = typer.Option(None, "--resume/--no-resume",
                                    help="continue from OUT/checkpoint.pt (default yes)"),
        calibrate_bn: bool = typer.Option(
            None, "--calibrate-bn/--no-calibrate-bn",
            help="recompute BatchNorm statistics on the natural images (random-init nets)"),
        overwrite: bool = typer.Option(False, help="replace results in a non-empty OUT"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        cfg = _config(
            None, model=model, weights=str(weights) if weights else None, arch=arch,
            mapping=mapping,
            **common(layers, n_images, size, input_size, steps, lr, param, jitter, tv,
                     seed, device, natural, resume, calibrate_bn),
        )
        _run(cfg, out, overwrite, progress)

"""CLI for analysis 5: ``cortexmap run lesion`` and ``cortexmap run contrast``
(kernel lesions and image contrast, Akbarinia & Gil-Rodríguez, Vision Research 2020)."""

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
from cortexmap.errors import CortexmapError

console = Console()

LESION_HELP = """Analysis 5a: remove each kernel of each layer in turn and measure accuracy on \
procedural test images at contrasts 100..1 %; find the kernels whose removal hurts low \
contrast most, show them (first-layer weights as RGB, preferred gratings deeper), and test that \
removing them together hurts more than removing as many random kernels. Re-running into the \
same folder resumes the per-layer sweep.

Examples:

  cortexmap run lesion --out runs/lesion

  cortexmap run lesion --layers conv1,conv2 --mode mean --per-class --n-images 500 \\
      --sets "conv1:3+7+9;conv2:1+2" --workers 2 --out runs/lesion_mean

  cortexmap run lesion --model mobilenet_v2 --layers features.0,features.3 \
      --images photos/ --labels labels.csv --class-names imagenet --out runs/lesion_mobilenet
"""

CONTRAST_HELP = """Analysis 5b: accuracy versus contrast with a Naka-Rushton fit (contrast at \
half maximum), where contrast is encoded (cross-validated linear decoding and RSA with a \
contrast model RDM, per layer), and divisive normalisation of the input or after a layer as a \
baseline mechanism.

Examples:

  cortexmap run contrast --out runs/contrast

  cortexmap run contrast --model zoo:vgg_sup_s0 --layers block1,block2,block3,fc6 \\
      --norm-layer block1 --out runs/contrast_vgg

  cortexmap run contrast --model mobilenet_v2 --layers features.0,features.3,features.6 \
      --norm-layer none --images photos/ --accuracy agreement --out runs/contrast_proxy
"""


def _contrasts(text: str | None) -> list[float] | None:
    """Contrast levels as fractions; '100,50,1%' style percentages are accepted with a '%'."""
    if text is None:
        return None
    if "%" in text:
        return [float(s.strip().rstrip("%")) / 100 for s in text.split(",") if s.strip()]
    return split_list(text, float)


def _sets(text: str | None) -> dict[str, list[list[int]]] | None:
    """'conv1:3+7+9;conv2:1+2' -> {'conv1': [[3, 7, 9]], 'conv2': [[1, 2]]}."""
    if text is None:
        return None
    out: dict[str, list[list[int]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        layer, sep, kernels = part.partition(":")
        try:
            ks = [int(k) for k in kernels.split("+") if k.strip()]
        except ValueError:
            ks = []
        if not sep or not ks:
            raise CortexmapError(
                f"Cannot read the lesion set {part!r}; write LAYER:K1+K2+..., sets separated by "
                "';', e.g. 'conv1:3+7+9;conv2:1+2'."
            )
        out.setdefault(layer.strip(), []).append(ks)
    return out


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("lesion", help=LESION_HELP)
    def lesion_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        config: Path = typer.Option(None, help="TOML/YAML/JSON file of LesionConfig fields"),
        model: str = typer.Option(None, help="model spec (default zoo:alexnet_supcontrast_s0)"),
        layers: str = typer.Option(None, help="comma-separated layers (default conv1..conv5)"),
        contrasts: str = typer.Option(None, help="contrast levels, fractions or percentages "
                                                 "(default 1,0.5,0.3,0.1,0.05,0.03,0.01)"),
        n_images: int = typer.Option(None, help="procedural test images (default 200)"),
        images: str = typer.Option(None, "--images", help=IMAGES_HELP),
        labels: str = typer.Option(None, "--labels", help=LABELS_HELP),
        class_names: str = typer.Option(None, "--class-names", help=CLASS_NAMES_HELP),
        accuracy: str = typer.Option(None, "--accuracy", help=ACCURACY_HELP),
        mode: str = typer.Option(None, help="zero (default) or mean replacement"),
        per_class: bool = typer.Option(None, "--per-class/--no-per-class",
                                       help="also accuracy per class"),
        sets: str = typer.Option(None, help="multi-kernel lesions 'conv1:3+7+9;conv2:1+2'"),
        n_top: int = typer.Option(None, help="kernels reported per layer (default 5)"),
        n_random_sets: int = typer.Option(None, help="random control sets (default 199)"),
        workers: int = typer.Option(None, help="Dask worker processes (default 0: in-process)"),
        scheduler: str = typer.Option(None, help="Dask scheduler address, slurm, pbs or sge"),
        seed: int = typer.Option(None, help="random seed (default 0)"),
        overwrite: bool = typer.Option(False, help="replace results in a non-empty OUT"),
        resume: bool = typer.Option(None, "--resume/--no-resume",
                                    help="reuse finished layers of a partial sweep (default yes)"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from cortexmap.config import load_config
        from cortexmap.probes.lesion_analysis import LesionConfig, run_lesion

        cfg = load_config(
            LesionConfig, config, section="lesion", model=model, layers=split_list(layers),
            contrasts=_contrasts(contrasts),
            n_images=n_images, mode=mode, per_class=per_class, lesion_sets=_sets(sets),
            n_top=n_top, n_random_sets=n_random_sets, n_workers=workers, scheduler=scheduler,
            seed=seed, resume=resume, **test_set_flags(images, labels, class_names, accuracy),
        )
        res = run_lesion(cfg, out, overwrite=overwrite, progress=progress)
        console.print(res.tables["top_kernels"].to_string(index=False))
        print_findings(res.findings)
        console.print(f"lesion results in {out} (report: {out / 'report.html'})")

    @run_app.command("contrast", help=CONTRAST_HELP)
    def contrast_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        config: Path = typer.Option(None, help="TOML/YAML/JSON file of ContrastConfig fields"),
        model: str = typer.Option(None, help="model spec (default zoo:alexnet_sup_s0)"),
        layers: str = typer.Option(None, help="layers for decoding/RSA (default conv1..fc7)"),
        contrasts: str = typer.Option(None, help="contrast levels, fractions or percentages"),
        n_images: int = typer.Option(None, help="procedural test images (default 200)"),
        images: str = typer.Option(None, "--images", help=IMAGES_HELP),
        labels: str = typer.Option(None, "--labels", help=LABELS_HELP),
        class_names: str = typer.Option(None, "--class-names", help=CLASS_NAMES_HELP),
        accuracy: str = typer.Option(None, "--accuracy", help=ACCURACY_HELP),
        per_class: bool = typer.Option(None, "--per-class/--no-per-class",
                                       help="also accuracy per class"),
        norm_layer: str = typer.Option(None, help="layer followed by divisive normalisation "
                                                  "(default conv1; 'none' to skip)"),
        norm_sigma: float = typer.Option(None, help="semi-saturation constant, a fraction of "
                                                    "the typical full-contrast energy (0.1)"),
        seed: int = typer.Option(None, help="random seed (default 0)"),
        overwrite: bool = typer.Option(False, help="replace results in a non-empty OUT"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from cortexmap.config import load_config
        from cortexmap.probes.lesion_analysis import ContrastConfig, run_contrast

        flags = dict(model=model, layers=split_list(layers), contrasts=_contrasts(contrasts),
                     n_images=n_images, per_class=per_class, norm_sigma=norm_sigma, seed=seed,
                     **test_set_flags(images, labels, class_names, accuracy))
        cfg = load_config(ContrastConfig, config, section="contrast", **flags)
        if norm_layer is not None:
            cfg = cfg.model_copy(update={
                "norm_layer": None if norm_layer.lower() == "none" else norm_layer})
        res = run_contrast(cfg, out, overwrite=overwrite, progress=progress)
        console.print(res.tables["curves"].to_string(index=False))
        console.print(res.tables["decoding"].merge(res.tables["rsa"], on="layer")
                      .to_string(index=False))
        print_findings(res.findings)
        console.print(f"contrast results in {out} (report: {out / 'report.html'})")

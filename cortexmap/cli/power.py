"""CLI for the power analysis: `cortexmap power`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

console = Console()

POWER_HELP = """How many subjects does an RSA study need? Simulates phantoms (a network's layer
RDMs planted in brain regions, as `cortexmap phantom`) over a grid of SNR x subjects x runs x
searchlight radius with repetitions, runs ROI RSA and the group searchlight (sign-flip,
max-statistic FWE) on each, and reports recovery (fraction of planted regions detected, Dice),
the family-wise false-positive rate on null phantoms (SNR 0) and the subjects needed for 80 %
recovery per SNR. Grid cells run as dask tasks (--scheduler local for a LocalCluster).

Writes cells, curve, needed, null tables, power.png, report.html, provenance.json into --out.
Its findings are method checks: recovery of a planted truth, not a brain result.

Examples:

  cortexmap power --out runs/power

  cortexmap power --snr 0.35,1 --subjects 4,8,12,16 --mask mni --scheduler local --out runs/pw

  cortexmap power --rdms runs/rdms/rdms.npz --regions V1,LOC --out runs/pw2
"""


def _floats(text: str, name: str) -> tuple[float, ...]:
    from cortexmap.errors import CortexmapError

    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise CortexmapError(f"--{name} must be comma-separated numbers; got {text!r}.") from exc


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    del run_app

    @app.command("power", help=POWER_HELP)
    def power_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        model: str = typer.Option("zoo:alexnet_sup_s0", "--model", help="Network to plant."),
        layers: str = typer.Option("conv1,conv3,conv5,fc7", "--layers",
                                   help="Comma-separated layers (or RDM names with --rdms)."),
        regions: str = typer.Option("V1,LOC,fusiform,parahippocampal", "--regions",
                                    help="Comma-separated regions, one per layer."),
        rdms: Path = typer.Option(None, "--rdms", help="RDMs file (.npz) instead of a network."),
        snr: str = typer.Option("0.25,0.35,0.5,1.0", "--snr", help="SNRs (> 0)."),
        subjects: str = typer.Option("4,8,12,16", "--subjects", help="Subject counts."),
        runs: str = typer.Option("2", "--runs", help="Runs per subject."),
        radius: str = typer.Option("6", "--radius", help="Searchlight radii (mm)."),
        repetitions: int = typer.Option(2, "--repetitions", help="Phantoms per grid cell."),
        null_repetitions: int = typer.Option(2, "--null-repetitions",
                                             help="Null phantoms (SNR 0) per runs x radius."),
        mask: str = typer.Option("slab", "--mask",
                                 help="slab (3 mm occipito-temporal) | mni (3 mm whole brain) "
                                      "| a mask file."),
        n_perm: int = typer.Option(2000, "--n-perm", help="Sign-flip permutations."),
        alpha: float = typer.Option(0.05, "--alpha"),
        target: float = typer.Option(0.8, "--target", help="Recovery target (fraction)."),
        scheduler: str = typer.Option(None, "--scheduler",
                                      help="none (this process) | local | address | slurm."),
        n_workers: int = typer.Option(None, "--n-workers", help="Local dask workers."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        from cortexmap.brain.phantom import mni_mask, slab_mask
        from cortexmap.brain.power import PowerGrid, power_analysis, write_power
        from cortexmap.errors import CortexmapError
        from cortexmap.rsa import RDMs

        layer_list = [s.strip() for s in layers.split(",") if s.strip()]
        region_list = [s.strip() for s in regions.split(",") if s.strip()]
        grid = PowerGrid(snr=_floats(snr, "snr"),
                         n_subjects=tuple(int(v) for v in _floats(subjects, "subjects")),
                         n_runs=tuple(int(v) for v in _floats(runs, "runs")),
                         radius_mm=_floats(radius, "radius"), repetitions=repetitions,
                         null_repetitions=null_repetitions)
        if out.exists() and any(out.iterdir()) and not overwrite:  # before the long work
            raise CortexmapError(f"Output folder {out} is not empty; pass --overwrite or "
                                 "choose another folder.")
        mask_img = {"slab": slab_mask, "mni": mni_mask}[mask](3) if mask in ("slab", "mni") \
            else mask
        if rdms:
            models = RDMs.load(rdms)
            if layers != "conv1,conv3,conv5,fc7":
                models = models.subset(layer_list)
        else:
            from cortexmap.analyses.rdms import layer_rdms

            models = layer_rdms(model, layer_list)
        sched = {None: "serial", "local": None}.get(scheduler, scheduler)
        res = power_analysis(models, region_list, grid, mask=mask_img, alpha=alpha,
                             n_perm=n_perm, target=target, seed=seed, scheduler=sched,
                             n_workers=n_workers,
                             progress=os.environ.get("CORTEXMAP_NO_PROGRESS", "") not in
                             ("1", "true", "yes"))
        write_power(res, out, config={
            "model": None if rdms else model, "rdms": str(rdms) if rdms else None,
            "layers": list(models.names), "regions": region_list, "grid": grid.__dict__,
            "mask": mask, "alpha": alpha, "n_perm": n_perm, "target": target, "seed": seed},
            overwrite=overwrite)
        console.print(res.needed.to_string(index=False))
        for f in res.findings:
            console.print(f"recovered the planted truth: {'yes' if f.reproduced else 'no'}: "
                          f"{f.claim} ({f.numbers})")
        console.print(f"-> {out}")

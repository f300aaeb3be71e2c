"""CLI for the brain side: `cortexmap phantom`, `cortexmap roi-rsa`, `cortexmap searchlight`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from cortexmap.analyses.brain import (
    PhantomConfig,
    RoiRsaConfig,
    SearchlightConfig,
    run_phantom,
    run_roi_rsa,
    run_searchlight,
)
from cortexmap.cli.common import print_findings

console = Console()

PHANTOM_HELP = """Write a phantom brain: simulated subjects on the MNI152 mask whose regions carry
the RDMs of a network's layers (layer i planted in region i), as NIfTI files like a real dataset.

Outputs in OUT: mask.nii.gz, atlas.nii.gz + atlas.tsv, sub-XX/sub-XX_run-YY_responses.nii.gz
(+ _conditions.tsv), truth.json (what was planted where), model_rdms.npz, provenance.json.

Examples:

  cortexmap phantom runs/phantom

  cortexmap phantom runs/ph --model zoo:alexnet_sup_s0 --layers conv1,conv5 --regions V1,fusiform

  cortexmap phantom runs/ph --rdms runs/rdms/rdms.npz --regions V1,LOC,fusiform --snr 1 --slab
"""

ROI_HELP = """ROI RSA of a dataset folder: one RDM per subject and ROI, compared with model RDMs.

DATASET is a folder with mask.nii.gz, atlas.nii.gz + atlas.tsv and sub-*/…_responses.nii.gz
(+ _conditions.tsv), e.g. one written by `cortexmap phantom`. Model RDMs default to the
phantom's model_rdms.npz. Writes per_subject, summary, best, dropped_voxels tables, group_rdms.npz,
report.html and provenance.json into --out.

Examples:

  cortexmap roi-rsa runs/phantom --out runs/roi

  cortexmap roi-rsa data/study --rdms runs/rdms/rdms.npz --metric crossnobis --out runs/roi_cn
"""

SEARCHLIGHT_HELP = """Whole-brain RSA searchlight of every subject, sign-flip group test per model
(max-statistic FWE, FDR), clusters with peak MNI coordinates and regions, winner-take-all map.

Runs chunks in parallel with dask: a LocalCluster by default, or an existing cluster with
--scheduler tcp://host:8786 (or slurm/pbs/sge via dask-jobqueue; "serial" for no dask).
Writes subjects/<sub>/r_<model>.nii.gz, group/{mean,t,p_fwe}_<model>.nii.gz, group/winner.nii.gz,
clusters, assignment, overlap, recovery (phantom), dropped tables, report.html, provenance.json.

Examples:

  cortexmap searchlight runs/phantom --out runs/sl

  cortexmap searchlight data/study --rdms rdms.npz --scheduler tcp://10.0.0.5:8786 --out sl

  cortexmap searchlight runs/phantom --metric crossnobis --noise shrinkage_diag --out runs/cn
"""


def _progress() -> bool:
    return os.environ.get("CORTEXMAP_NO_PROGRESS", "") not in ("1", "true", "yes")


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command("phantom", help=PHANTOM_HELP)
    def phantom_cmd(
        out: Path = typer.Argument(..., help="Output dataset folder."),
        model: str = typer.Option("zoo:alexnet_sup_s0", "--model", help="Network to plant."),
        layers: str = typer.Option("conv1,conv3,conv5,fc7", "--layers",
                                   help="Comma-separated layers (or RDM names with --rdms)."),
        regions: str = typer.Option("V1,LOC,fusiform,parahippocampal", "--regions",
                                    help="Comma-separated regions, one per layer."),
        stimuli: str = typer.Option("bundled", "--stimuli", help="'bundled' or image folder."),
        rdms: Path = typer.Option(None, "--rdms", help="RDMs file (.npz) instead of a network."),
        n_subjects: int = typer.Option(6, "--n-subjects",
                                       help="Subjects (6: sign-flip p can reach 0.016)."),
        n_runs: int = typer.Option(2, "--n-runs"),
        snr: float = typer.Option(0.5, "--snr", help="Signal SD / noise SD (0: null)."),
        resolution: int = typer.Option(3, "--resolution", help="Voxel size in mm (2 or 3)."),
        smoothness: float = typer.Option(6.0, "--smoothness", help="Noise FWHM in mm."),
        radius: float = typer.Option(8.0, "--radius", help="Region sphere radius in mm."),
        slab: bool = typer.Option(False, "--slab", help="Occipito-temporal part of the mask."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        cfg = PhantomConfig(model=model, layers=_split(layers), regions=_split(regions),
                            stimuli=stimuli, rdms=str(rdms) if rdms else None,
                            n_subjects=n_subjects, n_runs=n_runs, snr=snr,
                            resolution_mm=resolution, smoothness_mm=smoothness,
                            radius_mm=radius, slab=slab, seed=seed)
        ds = run_phantom(cfg, out, overwrite=overwrite, progress=_progress())
        planted = ", ".join(f"{r} <- {m}" for r, m in ds.planted.items())
        console.print(f"phantom: {len(ds.subjects)} subjects, {len(ds.conditions)} conditions, "
                      f"{planted} -> {ds.root}")

    @app.command("roi-rsa", help=ROI_HELP)
    def roi_cmd(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        rdms: Path = typer.Option(None, "--rdms", help="Model RDMs (.npz)."),
        atlas: Path = typer.Option(None, "--atlas", help="ROI label image."),
        atlas_table: Path = typer.Option(None, "--atlas-table", help="index/name table."),
        metric: str = typer.Option("correlation", "--metric",
                                   help="correlation | euclidean | sqeuclidean | cosine | "
                                        "crossnobis."),
        method: str = typer.Option("spearman", "--method",
                                   help="spearman | pearson | kendall_tau_a | cosine."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        cfg = RoiRsaConfig(dataset=str(dataset), rdms=str(rdms) if rdms else None,
                           atlas=str(atlas) if atlas else None,
                           atlas_table=str(atlas_table) if atlas_table else None,
                           metric=metric, method=method)
        res = run_roi_rsa(cfg, out, overwrite=overwrite, progress=_progress())
        console.print(res.tables["best"].to_string(index=False))
        print_findings(res.findings)
        console.print(f"-> {out}")

    @app.command("searchlight", help=SEARCHLIGHT_HELP)
    def searchlight_cmd(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        rdms: Path = typer.Option(None, "--rdms", help="Model RDMs (.npz)."),
        atlas: Path = typer.Option(None, "--atlas", help="ROI label image."),
        atlas_table: Path = typer.Option(None, "--atlas-table", help="index/name table."),
        radius: float = typer.Option(6.0, "--radius", help="Sphere radius in mm."),
        method: str = typer.Option("spearman", "--method", help="spearman | pearson."),
        metric: str = typer.Option("correlation", "--metric",
                                   help="correlation | sqeuclidean | euclidean | cosine | "
                                        "crossnobis (single-run patterns, see --noise)."),
        noise: str = typer.Option("shrinkage_diag", "--noise",
                                  help="crossnobis noise precision per sphere: none | diag | "
                                       "shrinkage_eye | shrinkage_diag."),
        threshold: float = typer.Option(0.5, "--threshold",
                                        help="Min. fraction of a sphere inside the mask."),
        min_voxels: int = typer.Option(10, "--min-voxels", help="Min. voxels per sphere."),
        n_perm: int = typer.Option(5000, "--n-perm", help="Sign-flip permutations."),
        alpha: float = typer.Option(0.05, "--alpha"),
        correction: str = typer.Option("fwe", "--correction", help="fwe | fdr | none."),
        statistic: str = typer.Option("t", "--statistic",
                                       help="t | mean (max-statistic; mean needs symmetric "
                                            "null maps)."),
        scheduler: str = typer.Option(None, "--scheduler",
                                      help="Dask scheduler address, slurm/pbs/sge, or serial."),
        n_workers: int = typer.Option(None, "--n-workers", help="Local dask workers."),
        dtype: str = typer.Option("float64", "--dtype", help="float64 | float32 (faster)."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        cfg = SearchlightConfig(
            dataset=str(dataset), rdms=str(rdms) if rdms else None,
            atlas=str(atlas) if atlas else None,
            atlas_table=str(atlas_table) if atlas_table else None, radius_mm=radius,
            method=method, metric=metric, noise=noise, threshold=threshold,
            min_voxels=min_voxels, n_perm=n_perm, alpha=alpha, correction=correction,
            statistic=statistic, scheduler=scheduler, n_workers=n_workers, dtype=dtype, seed=seed)
        res = run_searchlight(cfg, out, overwrite=overwrite, progress=_progress())
        cl = res.tables["clusters"]
        console.print(cl.head(20).to_string(index=False) if not cl.empty else "no cluster")
        print_findings(res.findings)
        console.print(f"-> {out}")

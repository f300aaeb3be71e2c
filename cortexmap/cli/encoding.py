"""CLI for encoding models: `cortexmap encode DATASET FEATURES`, the positional spelling of
the generated `cortexmap run encode` (same config, same run)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cortexmap.analyses import REGISTRY
from cortexmap.cli.common import console, print_findings, split_list
from cortexmap.config import build_config

ENCODE_HELP = """Voxel-wise encoding models of every subject of a dataset folder: cross-validated
ridge from a feature table to each voxel (penalty chosen per voxel), R² and Pearson r on
held-out stimuli, normalised by each voxel's noise ceiling when there are repeated runs;
group sign-flip test (max-statistic FWE). With 2-3 feature spaces (an .npz with one array per
space): variance partitioning (unique / shared R²) and banded ridge (himalaya) per region.

FEATURES: .npy (n_conditions, n_features) or .npz (one array per feature space), rows in the
order of the dataset's condition tables.

Writes subjects/<sub>/{r2,r,r2_norm,r_norm,noise_ceiling,alpha}.nii.gz, group/{mean,p_fwe}_
<kind>.nii.gz, summary, regions, partition, banded tables, report.html, provenance.json.

Examples:

  cortexmap encode runs/phantom layer.npy --out runs/enc

  cortexmap encode data/study spaces.npz --scheduler tcp://10.0.0.5:8786 --out runs/enc2
"""


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    del run_app

    @app.command("encode", help=ENCODE_HELP)
    def encode_cmd(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        features: Path = typer.Argument(..., help="Features (.npy or .npz)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        n_folds: int = typer.Option(5, "--n-folds", help="Cross-validation folds."),
        alphas: str = typer.Option(None, "--alphas",
                                   help="Comma-separated ridge penalties (default 1e-2..1e6)."),
        chunk_voxels: int = typer.Option(20000, "--chunk-voxels", help="Voxels per task."),
        n_perm: int = typer.Option(5000, "--n-perm", help="Sign-flip permutations."),
        banded_iter: int = typer.Option(20, "--banded-iter",
                                        help="himalaya random-search iterations."),
        scheduler: str = typer.Option(None, "--scheduler",
                                      help="none (this process) | local | tcp://host:port | "
                                           "slurm/pbs/sge."),
        n_workers: int = typer.Option(None, "--n-workers", help="Local dask workers."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        values = {"dataset": str(dataset), "features": str(features), "n_folds": n_folds,
                  "chunk_voxels": chunk_voxels, "n_perm": n_perm, "banded_iter": banded_iter,
                  "scheduler": scheduler, "n_workers": n_workers, "seed": seed}
        if alphas:
            values["alphas"] = split_list(alphas, float)
        analysis = REGISTRY["encode"]
        cfg = build_config(analysis.config, values, source="options")
        progress = os.environ.get("CORTEXMAP_NO_PROGRESS", "") not in ("1", "true", "yes")
        res = analysis.run(cfg, out, overwrite=overwrite, progress=progress)
        console.print(res.tables["summary"].to_string(index=False))
        print_findings(res.findings)
        console.print(f"-> {out}")

"""CLI for the RSA core: `cortexmap rdm` and `cortexmap compare` (thin layer over
:mod:`cortexmap.analyses.rdms`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from cortexmap.analyses.rdms import compare_rdm_files, make_rdms

console = Console()

RDM_HELP = """Compute RDMs from patterns and save them (.npz + parquet/csv table + figure + report).

INPUT is one of:

  - a .npy file: (n_conditions, n_units) or (n_sets, n_conditions, n_units);

  - a .npz file: one 2-D array per set (the array names become RDM names);

  - a .csv file: one row per condition, one numeric column per unit (a non-numeric
    first column is taken as condition labels);

  - an activation store (folder written by `cortexmap extract`); choose layers with
    --layers (default: all layers). Unit dimensions are flattened.

Outputs in --out: rdms.npz (load with cortexmap.rsa.RDMs.load), rdm_vectors.parquet/.csv
(one row per RDM and condition pair), rdms.png, report.html, provenance.json.

Examples:

  cortexmap rdm acts.zarr --layers conv1,conv5,fc7 --out runs/rdms

  cortexmap rdm patterns.npy --metric euclidean --out runs/rdms_euc

  cortexmap rdm roi_betas.npy --metric crossnobis --conditions conds.txt --runs runs.txt --out r

  cortexmap rdm table.csv --metric correlation --out runs/csv_rdms --overwrite
"""

COMPARE_HELP = """Compare every RDM of file A with every RDM of file B (.npz from `cortexmap rdm`).

Writes similarity.parquet/.csv (one row per pair; with --n-perm also permutation p-values
and FDR q-values), similarity_matrix.csv (wide), similarity.png, report.html and
provenance.json into --out.

Examples:

  cortexmap compare runs/rdms/rdms.npz brain_rdms.npz --out runs/cmp

  cortexmap compare model.npz brain.npz --method kendall_tau_a --n-perm 1000 --out runs/cmp_tau

  cortexmap compare runs/rdms/rdms.npz runs/rdms/rdms.npz --method pearson --out runs/self

  cortexmap compare runs/rdms/rdms.npz runs/rdms/rdms.npz --method cka --out runs/cka
"""


def _progress_enabled() -> bool:
    return os.environ.get("CORTEXMAP_NO_PROGRESS", "") not in ("1", "true", "yes")


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command("rdm", help=RDM_HELP)
    def rdm_cmd(
        input: Path = typer.Argument(..., help="Patterns (.npy/.npz/.csv) or activation store."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        metric: str = typer.Option(
            "correlation", "--metric", "-m",
            help="correlation | euclidean | sqeuclidean | cosine | crossnobis."),
        layers: str = typer.Option(None, "--layers", help="Comma-separated layers / arrays."),
        conditions: Path = typer.Option(
            None, "--conditions", help="Text file, one condition label per pattern row."),
        runs: Path = typer.Option(
            None, "--runs", help="Crossnobis: text file, one run label per pattern row."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        chosen = [s.strip() for s in layers.split(",") if s.strip()] if layers else None
        rdms = make_rdms(input, out, metric=metric, layers=chosen, conditions=conditions,
                         runs=runs, overwrite=overwrite, progress=_progress_enabled())
        console.print(f"{len(rdms)} RDM(s) of {rdms.n_conditions} conditions -> {out}")

    @app.command("compare", help=COMPARE_HELP)
    def compare_cmd(
        rdms_a: Path = typer.Argument(..., help="RDM file (.npz from `cortexmap rdm`)."),
        rdms_b: Path = typer.Argument(..., help="RDM file to compare with."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        method: str = typer.Option(
            "spearman", "--method", "-m",
            help="pearson | spearman | kendall_tau_a | cosine | rho_a | whitened_cosine | "
                 "whitened_pearson | cka | cka_debiased | cka_rbf | cka_rbf_debiased."),
        n_perm: int = typer.Option(
            0, "--n-perm", help="Condition-label permutations for p-values (0: none)."),
        seed: int = typer.Option(0, "--seed", help="Random seed for permutations."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        res = compare_rdm_files(rdms_a, rdms_b, out, method=method, n_perm=n_perm, seed=seed,
                                overwrite=overwrite, progress=_progress_enabled())
        console.print(f"{len(res.a)} x {len(res.b)} {res.method} similarities -> {out}")

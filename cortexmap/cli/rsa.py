"""CLI for the RSA core: `cortexmap rdm` and `cortexmap compare` (thin layer over cortexmap.rsa)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from cortexmap.errors import CortexmapError

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


def _read_lines(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    if not path.exists():
        raise CortexmapError(f"Label file {path} does not exist; give one label per line.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_patterns(
    path: Path, layers: list[str] | None = None
) -> tuple[list[np.ndarray], list[str], list[str] | None]:
    """Read patterns from .npy/.npz/.csv or an activation store -> (sets, names, conditions)."""
    if not path.exists():
        raise CortexmapError(f"Input {path} does not exist; check the path.")
    if path.is_dir():
        from cortexmap.models import ActivationStore

        store = ActivationStore(path)
        chosen = layers or list(store.layers)
        unknown = [lay for lay in chosen if lay not in store.layers]
        if unknown:
            raise CortexmapError(
                f"Layer(s) {unknown} are not in store {path}; valid layers: {store.layers}."
            )
        return [store.load(lay, flat=True) for lay in chosen], chosen, list(store.ids)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 3:
                return list(arr), [f"{path.stem}{i}" for i in range(len(arr))], None
            if arr.ndim != 2:
                raise CortexmapError(
                    f"{path} holds an array of shape {arr.shape}; expected (n_conditions, "
                    "n_units) or (n_sets, n_conditions, n_units)."
                )
            return [arr], [path.stem], None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = [k for k in z.files if layers is None or k in layers]
                if not names:
                    raise CortexmapError(f"No arrays selected from {path}; it has {z.files}.")
                return [z[k].reshape(len(z[k]), -1) for k in names], names, None
        if suffix == ".csv":
            import pandas as pd

            df = pd.read_csv(path)
            if df.empty:
                raise CortexmapError(
                    f"{path} has a header but no rows; give one row of numbers per condition."
                )
            conditions = None
            is_num = pd.api.types.is_numeric_dtype
            if len(df.columns) and not is_num(df.iloc[:, 0]):
                conditions = df.iloc[:, 0].astype(str).tolist()
                df = df.iloc[:, 1:]
            bad = [c for c in df.columns if not is_num(df[c])]
            if bad:
                raise CortexmapError(
                    f"{path}: column(s) {bad[:5]} are not numeric; only the first column may "
                    "hold condition labels."
                )
            return [df.to_numpy(dtype=np.float64)], [path.stem], conditions
    except (OSError, ValueError) as exc:
        if isinstance(exc, CortexmapError):
            raise
        raise CortexmapError(f"Could not read {path}: {exc}") from exc
    raise CortexmapError(
        f"Unsupported input {path}; give a .npy, .npz or .csv file or an activation store folder."
    )


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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cortexmap.report import Report
        from cortexmap.report.figures import save_figure
        from cortexmap.rsa import RDMs, compute_rdms
        from cortexmap.rsa.figures import plot_rdms
        from cortexmap.utils.io import prepare_output_dir, write_table
        from cortexmap.utils.progress import track
        from cortexmap.utils.provenance import write_provenance

        chosen = [s.strip() for s in layers.split(",") if s.strip()] if layers else None
        outdir = prepare_output_dir(out, overwrite)
        sets, names, labels = load_patterns(input, chosen)
        cond_labels = _read_lines(conditions)
        run_labels = _read_lines(runs)
        if metric != "crossnobis" and cond_labels is None:
            cond_labels = labels
        if metric == "crossnobis":
            rdms = compute_rdms(sets, metric=metric, names=names, conditions=cond_labels,
                                runs=run_labels)
        else:  # one set at a time so long layer lists show progress
            rdms = RDMs.concat([
                compute_rdms([x], metric=metric, names=[name], conditions=cond_labels)
                for x, name in track(list(zip(sets, names, strict=True)), "RDMs",
                                     enabled=_progress_enabled())
            ])
        rdms.save(outdir / "rdms.npz", overwrite=True)
        write_table(rdms.to_frame(), outdir / "rdm_vectors")
        fig = plot_rdms(rdms)
        save_figure(fig, outdir / "rdms.png", close=False)
        report = Report("RDMs", f"{len(rdms)} RDM(s) from {input}")
        report.section(
            "RDMs", f"{metric} RDMs over {rdms.n_conditions} conditions "
            "(shown as percentiles of the dissimilarities).",
        ).figure(fig, "One heatmap per RDM; rows and columns are conditions.")
        plt.close(fig)
        report.write(outdir / "report.html")
        write_provenance(outdir, config={"input": str(input), "metric": metric,
                                         "layers": names}, inputs={"input": input})
        console.print(f"{len(rdms)} RDM(s) of {rdms.n_conditions} conditions -> {outdir}")

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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd

        from cortexmap.report import Report
        from cortexmap.report.figures import save_figure
        from cortexmap.rsa import RDMs, compare, permutation_test
        from cortexmap.rsa.compare import canonical_method, match_conditions
        from cortexmap.rsa.figures import plot_similarity
        from cortexmap.utils.io import prepare_output_dir, write_table
        from cortexmap.utils.provenance import write_provenance

        method = canonical_method(method)
        if n_perm < 0:
            raise CortexmapError(f"--n-perm must be 0 (no p-values) or positive; got {n_perm}.")
        a, b = RDMs.load(rdms_a), RDMs.load(rdms_b)
        b = match_conditions(a, b, (str(rdms_a), str(rdms_b)))  # same stimulus, same position
        outdir = prepare_output_dir(out, overwrite)
        if n_perm > 0:
            res = permutation_test(a, b, method, n_perm=n_perm, seed=seed,
                                   progress=_progress_enabled())
            sim, table = res.observed, res.to_frame().rename(columns={"observed": "similarity",
                                                                      "model": "a", "data": "b"})
        else:
            sim = compare(a, b, method)
            ia, ib = np.meshgrid(range(len(a)), range(len(b)), indexing="ij")
            table = pd.DataFrame({"a": np.asarray(a.names, dtype=object)[ia.ravel()],
                                  "b": np.asarray(b.names, dtype=object)[ib.ravel()],
                                  "method": method, "similarity": sim.ravel()})
        write_table(table, outdir / "similarity")
        wide = pd.DataFrame(sim, index=a.names, columns=b.names)
        from cortexmap.utils.io import write_text

        write_text(outdir / "similarity_matrix.csv", wide.to_csv(index_label="rdm"))
        fig = plot_similarity(sim, a.names, b.names, method)
        save_figure(fig, outdir / "similarity.png", close=False)
        report = Report("RDM comparison", f"{rdms_a} vs {rdms_b} ({method})")
        sec = report.section("Similarity", f"{method} between every RDM of A and of B.")
        sec.figure(fig, "Rows: RDMs of A; columns: RDMs of B.")
        sec.table(table, "One row per pair of RDMs.")
        plt.close(fig)
        report.write(outdir / "report.html")
        write_provenance(outdir, config={"a": str(rdms_a), "b": str(rdms_b), "method": method,
                                         "n_perm": n_perm}, seed=seed,
                         inputs={"a": rdms_a, "b": rdms_b})
        console.print(f"{len(a)} x {len(b)} {method} similarities -> {outdir}")

"""RDMs as files: computing them from patterns or a network, and comparing two sets of them.

The library side of ``cortexmap rdm`` and ``cortexmap compare``::

    from cortexmap.analyses.rdms import compare_rdm_files, layer_rdms, make_rdms

    rdms = make_rdms("acts.zarr", "runs/rdms", layers=["conv1", "fc7"])   # computes + writes
    net_rdms = layer_rdms("zoo:alexnet_sup_s0", ["conv1", "fc7"])          # a network on images
    cmp = compare_rdm_files(rdms, "brain_rdms.npz", "runs/cmp", method="spearman", n_perm=1000)
    cmp.table                                                              # one row per pair

Each writing function checks its inputs before the output folder exists and writes its files
atomically, with ``report.html`` and ``provenance.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.models import ActivationStore, Extractor, load
from cortexmap.models.preprocessing import input_size_of
from cortexmap.report import Report
from cortexmap.report.figures import save_figure
from cortexmap.rsa import RDMs, compare, compute_rdms, permutation_test
from cortexmap.rsa.compare import canonical_method, match_conditions
from cortexmap.rsa.figures import plot_rdms, plot_similarity
from cortexmap.stimuli import load_stimuli
from cortexmap.utils.io import prepare_output_dir, write_table, write_text
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import write_provenance

PathLike = str | os.PathLike


def read_labels(path: PathLike | None) -> list[str] | None:
    """One label per non-empty line of a text file (None when ``path`` is None)."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise CortexmapError(f"Label file {path} does not exist; give one label per line.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_patterns(
    path: PathLike, layers: Sequence[str] | None = None
) -> tuple[list[np.ndarray], list[str], list[str] | None]:
    """Read activity patterns from a file or an activation store.

    Parameters
    ----------
    path : str or path
        A .npy file, (n_conditions, n_units) or (n_sets, n_conditions, n_units); a .npz file,
        one array per set (its names become the RDM names); a .csv file, one row per
        condition and one numeric column per unit (a non-numeric first column holds condition
        labels); or an activation store folder written by ``cortexmap extract``.
    layers : sequence of str, optional
        Arrays of an .npz file or layers of a store to read (default: all).

    Returns
    -------
    sets : list of ndarray, each (n_conditions, n_units)
        Unit dimensions flattened.
    names : list of str
        One name per set.
    conditions : list of str or None
        Condition labels when the input has them (store ids, the csv's first column).
    """
    path = Path(path)
    if not path.exists():
        raise CortexmapError(f"Input {path} does not exist; check the path.")
    if path.is_dir():
        store = ActivationStore(path)
        chosen = list(layers) if layers else list(store.layers)
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
            return _csv_patterns(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, CortexmapError):
            raise
        raise CortexmapError(f"Could not read {path}: {exc}") from exc
    raise CortexmapError(
        f"Unsupported input {path}; give a .npy, .npz or .csv file or an activation store folder."
    )


def _csv_patterns(path: Path) -> tuple[list[np.ndarray], list[str], list[str] | None]:
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


def layer_rdms(model: str, layers: list[str], stimuli: str = "bundled") -> RDMs:
    """Correlation-distance RDMs of a network's layers on a stimulus set.

    Parameters
    ----------
    model : str
        Model spec for :func:`cortexmap.models.load` ("zoo:alexnet_sup_s0", "mobilenet_v2").
    layers : list of str
        Layers, one RDM each (unit dimensions flattened).
    stimuli : str
        "bundled" or a folder of images, resized to the network's input size.

    Returns
    -------
    RDMs
        ``len(layers)`` RDMs over the stimuli (conditions = stimulus ids).
    """
    net = load(model)
    stim = load_stimuli(stimuli, size=input_size_of(net, default=64))
    acts = Extractor(net, layers).extract(stim)
    return compute_rdms([acts[k].reshape(len(stim), -1) for k in layers], names=layers,
                        conditions=list(stim.ids))


def pattern_rdms(
    source: PathLike,
    metric: str = "correlation",
    layers: Sequence[str] | None = None,
    conditions: PathLike | list[str] | None = None,
    runs: PathLike | list[str] | None = None,
    progress: bool = True,
) -> RDMs:
    """RDMs of the patterns in ``source`` (see :func:`load_patterns`), one per set.

    Parameters
    ----------
    source : str or path
        Patterns file or activation store.
    metric : str
        An RDM metric of :data:`cortexmap.rsa.METRICS` ("correlation", "euclidean",
        "sqeuclidean", "cosine", "crossnobis").
    layers : sequence of str, optional
        Sets to use (default: all).
    conditions, runs : path or list of str, optional
        One condition (and, for crossnobis, run) label per pattern row: a list or a text file
        with one label per line. Default conditions: the input's own labels.
    progress : bool
        Show a progress bar over the sets.

    Returns
    -------
    RDMs
        One RDM per set, named after it.
    """
    sets, names, labels = load_patterns(source, layers)
    cond = conditions if isinstance(conditions, list) else read_labels(conditions)
    run_labels = runs if isinstance(runs, list) else read_labels(runs)
    if metric == "crossnobis":
        return compute_rdms(sets, metric=metric, names=names, conditions=cond, runs=run_labels)
    cond = labels if cond is None else cond
    # one set at a time so long layer lists show progress
    return RDMs.concat([
        compute_rdms([x], metric=metric, names=[name], conditions=cond)
        for x, name in track(list(zip(sets, names, strict=True)), "RDMs", enabled=progress)
    ])


def write_rdms(rdms: RDMs, outdir: PathLike, source: str = "", overwrite: bool = False,
               config: dict | None = None, inputs: dict | None = None) -> Path:
    """Write ``rdms.npz``, ``rdm_vectors`` (Parquet + CSV, one row per RDM and condition
    pair), ``rdms.png``, ``report.html`` and ``provenance.json`` into ``outdir``.

    ``source`` names where the RDMs came from (report subtitle); ``config`` and ``inputs``
    go into the provenance. Returns the output folder.
    """
    out = prepare_output_dir(outdir, overwrite)
    rdms.save(out / "rdms.npz", overwrite=True)
    write_table(rdms.to_frame(), out / "rdm_vectors")
    fig = plot_rdms(rdms)
    save_figure(fig, out / "rdms.png", close=False)
    report = Report("RDMs", f"{len(rdms)} RDM(s) from {source}")
    report.section(
        "RDMs", f"{rdms.metric} RDMs over {rdms.n_conditions} conditions "
        "(shown as percentiles of the dissimilarities).",
    ).figure(fig, "One heatmap per RDM; rows and columns are conditions.")
    report.write(out / "report.html")
    write_provenance(out, config=config or {"metric": rdms.metric, "layers": rdms.names},
                     inputs=inputs or {})
    return out


def make_rdms(
    source: PathLike,
    outdir: PathLike,
    metric: str = "correlation",
    layers: Sequence[str] | None = None,
    conditions: PathLike | list[str] | None = None,
    runs: PathLike | list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RDMs:
    """Compute the RDMs of a patterns file or activation store and write them to ``outdir``.

    :func:`pattern_rdms` then :func:`write_rdms`; an output folder that is not empty is
    refused (unless ``overwrite``) before the work. Returns the RDMs (the file reads back with
    :meth:`RDMs.load`).
    """
    out = prepare_output_dir(outdir, overwrite)
    rdms = pattern_rdms(source, metric, layers, conditions, runs, progress)
    write_rdms(rdms, out, source=str(source), overwrite=overwrite,
               config={"input": str(source), "metric": metric, "layers": list(rdms.names)},
               inputs={"input": Path(source)})
    return rdms


@dataclass
class RdmComparison:
    """Every RDM of ``a`` against every RDM of ``b``.

    similarity : ndarray (len(a), len(b)). table : one row per pair (a, b, method,
    similarity; with permutations also p and the FDR q-value).
    """

    a: RDMs
    b: RDMs
    method: str
    similarity: np.ndarray
    table: pd.DataFrame
    n_perm: int = 0

    def matrix(self) -> pd.DataFrame:
        """The similarities as a wide table (rows: RDMs of a; columns: RDMs of b)."""
        return pd.DataFrame(self.similarity, index=self.a.names, columns=self.b.names)


def _as_rdms(value: RDMs | PathLike) -> RDMs:
    return value if isinstance(value, RDMs) else RDMs.load(value)


def compare_rdms(a: RDMs | PathLike, b: RDMs | PathLike, method: str = "spearman",
                 n_perm: int = 0, seed: int = 0, progress: bool = True,
                 names: tuple[str, str] = ("a", "b")) -> RdmComparison:
    """Compare every RDM of ``a`` with every RDM of ``b``.

    Parameters
    ----------
    a, b : RDMs or path
        RDMs or RDM files (.npz from ``cortexmap rdm`` / :meth:`RDMs.save`). ``b``'s conditions
        are matched to ``a``'s by label (same stimulus, same position).
    method : str
        A comparison method of :data:`cortexmap.rsa.METHODS` (aliases such as "tau-a" allowed).
    n_perm : int
        Condition-label permutations for p-values (0: none); FDR q-values over all pairs.
    seed : int
        Seed of the permutations.
    names : (str, str)
        How ``a`` and ``b`` are named in error messages.

    Returns
    -------
    RdmComparison
    """
    a, b, method = _checked(a, b, method, n_perm, names)
    return _similarities(a, b, method, n_perm, seed, progress)


def _checked(a: RDMs | PathLike, b: RDMs | PathLike, method: str, n_perm: int,
             names: tuple[str, str]) -> tuple[RDMs, RDMs, str]:
    """The RDMs with ``b``'s conditions in ``a``'s order, and the canonical method name."""
    method = canonical_method(method)
    if n_perm < 0:
        raise CortexmapError(f"n_perm must be 0 (no p-values) or positive; got {n_perm}.")
    a, b = _as_rdms(a), _as_rdms(b)
    return a, match_conditions(a, b, names), method  # same stimulus, same position


def _similarities(a: RDMs, b: RDMs, method: str, n_perm: int, seed: int, progress: bool
                  ) -> RdmComparison:
    if n_perm > 0:
        res = permutation_test(a, b, method, n_perm=n_perm, seed=seed, progress=progress)
        sim = res.observed
        table = res.to_frame().rename(columns={"observed": "similarity", "model": "a",
                                               "data": "b"})
    else:
        sim = compare(a, b, method)
        ia, ib = np.meshgrid(range(len(a)), range(len(b)), indexing="ij")
        table = pd.DataFrame({"a": np.asarray(a.names, dtype=object)[ia.ravel()],
                              "b": np.asarray(b.names, dtype=object)[ib.ravel()],
                              "method": method, "similarity": sim.ravel()})
    return RdmComparison(a, b, method, sim, table, n_perm)


def write_comparison(comparison: RdmComparison, outdir: PathLike, overwrite: bool = False,
                     config: dict | None = None, inputs: dict | None = None,
                     seed: int | None = None, title: str = "") -> Path:
    """Write ``similarity`` (Parquet + CSV), ``similarity_matrix.csv`` (wide),
    ``similarity.png``, ``report.html`` and ``provenance.json`` into ``outdir``."""
    c = comparison
    out = prepare_output_dir(outdir, overwrite)
    write_table(c.table, out / "similarity")
    write_text(out / "similarity_matrix.csv", c.matrix().to_csv(index_label="rdm"))
    fig = plot_similarity(c.similarity, c.a.names, c.b.names, c.method)
    save_figure(fig, out / "similarity.png", close=False)
    report = Report("RDM comparison", title or c.method)
    sec = report.section("Similarity", f"{c.method} between every RDM of A and of B.")
    sec.figure(fig, "Rows: RDMs of A; columns: RDMs of B.")
    sec.table(c.table, "One row per pair of RDMs.")
    report.write(out / "report.html")
    write_provenance(out, config=config or {"method": c.method, "n_perm": c.n_perm}, seed=seed,
                     inputs=inputs or {})
    return out


def compare_rdm_files(a: RDMs | PathLike, b: RDMs | PathLike, outdir: PathLike,
                      method: str = "spearman", n_perm: int = 0, seed: int = 0,
                      overwrite: bool = False, progress: bool = True) -> RdmComparison:
    """:func:`compare_rdms` then :func:`write_comparison`.

    The RDMs are read and their conditions matched before the output folder exists; a folder
    that is not empty is refused (unless ``overwrite``) before the permutations run.
    """
    label = [str(x) if not isinstance(x, RDMs) else name for x, name in ((a, "a"), (b, "b"))]
    rdms_a, rdms_b, method = _checked(a, b, method, n_perm, (label[0], label[1]))
    out = prepare_output_dir(outdir, overwrite)
    comparison = _similarities(rdms_a, rdms_b, method, n_perm, seed, progress)
    files = {k: Path(x) for k, x in (("a", a), ("b", b)) if not isinstance(x, RDMs)}
    write_comparison(comparison, out, overwrite,
                     config={"a": label[0], "b": label[1], "method": method, "n_perm": n_perm},
                     inputs=files, seed=seed, title=f"{label[0]} vs {label[1]} ({method})")
    return comparison

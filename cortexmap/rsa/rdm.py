"""Representational dissimilarity matrices (RDMs): the container and their computation.

An RDM set is stored the way rsatoolbox and ``scipy.spatial.distance.squareform`` store it: one
row per RDM holding the upper triangle (row-major, diagonal excluded), so a 92-condition RDM is a
vector of 4186 dissimilarities. Every other module of cortexmap reads and writes this one format
(:class:`RDMs`, saved with :meth:`RDMs.save` as ``.npz``).

Distances are computed from Gram matrices with BLAS (``X @ X.T``) in float64, streaming over
blocks of units so memory stays bounded by one block however many units a layer has.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.utils.io import atomic_path, check_output_file
from cortexmap.utils.validation import as_finite_array, check_conditions

METRICS = ("correlation", "euclidean", "sqeuclidean", "cosine", "crossnobis")
#: A config field naming an RDM distance.
RdmMetric = Literal[METRICS]
#: An RDM distance computed from one response pattern per condition (crossnobis needs runs).
PatternMetric = Literal[tuple(m for m in METRICS if m != "crossnobis")]

# Units processed per BLAS block: big enough for an efficient GEMM, small enough that the float64
# copy of one block of a 1000-condition layer stays around 64 MB.
_BLOCK_UNITS = 8192
# float32 products accumulate rounding error with the number of summed terms: short blocks keep
# each float32 partial sum accurate, the float64 sum over blocks keeps the total accurate.
_SINGLE_BLOCK_UNITS = 1024

# Metric names differ between the two packages: cortexmap's "sqeuclidean" (squared distance per
# unit) is rsatoolbox's "euclidean" method, whose RDMs it labels "squared euclidean".
_TO_RSATOOLBOX = {
    "sqeuclidean": "squared euclidean",
    "euclidean": "euclidean (not squared)",
    "correlation": "correlation",
    "cosine": "cosine",
    "crossnobis": "crossnobis",
}
_FROM_RSATOOLBOX = {v: k for k, v in _TO_RSATOOLBOX.items()} | {"euclidean": "sqeuclidean"}
_CONDITION_KEYS = ("conditions", "conds", "stimulus", "stimuli", "condition")


def rsatoolbox_module():
    """The ``rsatoolbox`` package (optional; imported only when converting)."""
    try:
        import rsatoolbox
    except ImportError as exc:  # pragma: no cover - rsatoolbox is a dev dependency
        raise CortexmapError(
            "rsatoolbox is not installed; pip install 'rsatoolbox>=0.3,<0.4' to convert."
        ) from exc
    return rsatoolbox


# ----------------------------------------------------------------------------------------------
# Upper-triangle helpers
# ----------------------------------------------------------------------------------------------
def n_pairs(n_conditions: int) -> int:
    """Number of condition pairs, n (n - 1) / 2."""
    return n_conditions * (n_conditions - 1) // 2


def n_conditions_from_pairs(n_pairs_: int, name: str = "RDM vectors") -> int:
    """Invert :func:`n_pairs`; raise when ``n_pairs_`` is not a triangular number."""
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs_)) / 2))
    if n * (n - 1) // 2 != n_pairs_:
        raise CortexmapError(
            f"{name} have {n_pairs_} entries, which is not n(n-1)/2 for any condition count n; "
            "pass upper-triangle vectors (scipy squareform order) or full square matrices."
        )
    return n


def triu_indices(n_conditions: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices of the upper triangle in squareform order (shape (n_pairs,) each)."""
    return np.triu_indices(n_conditions, k=1)


def _triu(mat: np.ndarray) -> np.ndarray:
    """(n, n) or (k, n, n) -> (n_pairs,) or (k, n_pairs) upper triangle vectors."""
    i, j = triu_indices(mat.shape[-1])
    return mat[..., i, j]


# ----------------------------------------------------------------------------------------------
# Container
# ----------------------------------------------------------------------------------------------
@dataclass
class RDMs:
    """A set of RDMs over the same conditions.

    Attributes:
        vectors: (n_sets, n_pairs) float64 upper triangles in squareform order.
        n_conditions: number of conditions (stimuli) n; ``n_pairs = n (n - 1) / 2``.
        names: one name per RDM (e.g. layer or subject names).
        metric: dissimilarity measure ("correlation", "euclidean", ... or any label).
        conditions: optional condition labels (length n), e.g. stimulus ids.
        descriptors: optional per-RDM labels, {key: one value per RDM} (rsatoolbox's
            ``rdm_descriptors``), e.g. ``{"subject": [...], "session": [...], "region": [...]}``;
            select with :meth:`select`.
    """

    vectors: np.ndarray
    n_conditions: int
    names: list[str] = field(default_factory=list)
    metric: str = "unknown"
    conditions: list[str] | None = None
    descriptors: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vec = np.asarray(self.vectors, dtype=np.float64)
        if vec.ndim == 1:
            vec = vec[None, :]
        if vec.ndim != 2:
            raise CortexmapError(
                f"RDM vectors must have shape (n_sets, n_pairs); got shape {vec.shape}."
            )
        self.vectors = vec
        self.n_conditions = int(self.n_conditions)
        if vec.shape[1] != n_pairs(self.n_conditions):
            raise CortexmapError(
                f"RDM vectors have {vec.shape[1]} entries but {self.n_conditions} conditions need "
                f"{n_pairs(self.n_conditions)}; check n_conditions."
            )
        if not self.names:
            self.names = [f"rdm{i}" for i in range(vec.shape[0])]
        self.names = [str(n) for n in self.names]
        if len(self.names) != vec.shape[0]:
            raise CortexmapError(
                f"Got {len(self.names)} names for {vec.shape[0]} RDMs; give one name per RDM."
            )
        if self.conditions is not None:
            self.conditions = [str(c) for c in self.conditions]
            if len(self.conditions) != self.n_conditions:
                raise CortexmapError(
                    f"Got {len(self.conditions)} condition labels for {self.n_conditions} "
                    "conditions; give one label per condition."
                )
        self.descriptors = {str(k): [str(v) for v in vals]
                            for k, vals in (self.descriptors or {}).items()}
        bad = {k: len(v) for k, v in self.descriptors.items() if len(v) != vec.shape[0]}
        if bad:
            raise CortexmapError(
                f"RDM descriptors {bad} do not have one value per RDM ({vec.shape[0]} RDMs)."
            )

    def _described(self, idx: Sequence[int]) -> dict[str, list[str]]:
        return {k: [v[i] for i in idx] for k, v in self.descriptors.items()}

    def select(self, **criteria: str | Sequence[str]) -> RDMs:
        """The RDMs whose descriptors match, e.g. ``select(region="IT", session="1")``; a
        sequence of values matches any of them."""
        unknown = [k for k in criteria if k not in self.descriptors]
        if unknown:
            raise CortexmapError(
                f"Unknown RDM descriptor(s) {unknown}; these RDMs have {sorted(self.descriptors)}."
            )
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in criteria.items():
            values = {str(wanted)} if isinstance(wanted, str) else {str(w) for w in wanted}
            keep &= np.isin(self.descriptors[key], list(values))
        if not keep.any():
            raise CortexmapError(
                f"No RDM matches {criteria}; available values: "
                + "; ".join(f"{k}: {sorted(set(v))}" for k, v in self.descriptors.items())
            )
        return self[keep]

    # -- basic protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.vectors.shape[0]

    def __getitem__(self, key: int | str | slice | Sequence[int] | Sequence[str]) -> RDMs:
        """Select RDMs by position(s) or name(s); always returns an :class:`RDMs`."""
        if isinstance(key, str):
            return self.subset([key])
        if isinstance(key, slice):
            idx = list(range(len(self)))[key]
        elif isinstance(key, (int, np.integer)):
            idx = [int(key)]
        elif isinstance(key, np.ndarray) and key.dtype == bool:
            if key.shape != (len(self),):
                raise CortexmapError(
                    f"Boolean index has shape {key.shape}; expected ({len(self)},)."
                )
            idx = np.flatnonzero(key).tolist()
        else:
            key = list(key)
            if key and isinstance(key[0], str):
                return self.subset(key)
            idx = [int(k) for k in key]
        return RDMs(self.vectors[idx], self.n_conditions, [self.names[i] for i in idx],
                    self.metric, self.conditions, self._described(idx))

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:4]) + (", ..." if len(self) > 4 else "")
        return (f"RDMs(n_sets={len(self)}, n_conditions={self.n_conditions}, "
                f"metric={self.metric!r}, names=[{shown}])")

    @property
    def n_pairs(self) -> int:
        return self.vectors.shape[1]

    def matrices(self) -> np.ndarray:
        """Square symmetric RDMs, shape (n_sets, n, n), zero diagonal."""
        n = self.n_conditions
        out = np.zeros((len(self), n, n))
        i, j = triu_indices(n)
        out[:, i, j] = self.vectors
        out[:, j, i] = self.vectors
        return out

    def subset(self, names: Sequence[str]) -> RDMs:
        """The RDMs with the given names, in the given order."""
        index = {n: k for k, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise CortexmapError(
                f"Unknown RDM name(s) {missing}; valid names are {self.names}."
            )
        idx = [index[n] for n in names]
        return RDMs(self.vectors[idx], self.n_conditions, list(names), self.metric,
                    self.conditions, self._described(idx))

    def subset_conditions(self, index: Sequence[int] | np.ndarray) -> RDMs:
        """Restrict (or reorder/resample) conditions; ``index`` are condition positions.

        Repeated indices (bootstrap samples) give pairs of a condition with its copy; those
        dissimilarities are NaN (undefined), and :func:`cortexmap.rsa.compare` skips NaN entries.
        """
        idx = np.asarray(index, dtype=int)
        mats = self.matrices()[:, idx][:, :, idx]
        vec = _triu(mats)
        i, j = triu_indices(len(idx))
        vec[:, idx[i] == idx[j]] = np.nan
        conds = [self.conditions[k] for k in idx] if self.conditions is not None else None
        return RDMs(vec, len(idx), list(self.names), self.metric, conds, self.descriptors)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_matrices(
        cls,
        matrices: np.ndarray,
        names: Sequence[str] | None = None,
        metric: str = "unknown",
        conditions: Sequence[str] | None = None,
        check_symmetric: bool = True,
    ) -> RDMs:
        """Build from square RDMs of shape (n, n) or (n_sets, n, n)."""
        m = np.asarray(matrices, dtype=np.float64)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3 or m.shape[1] != m.shape[2]:
            raise CortexmapError(
                f"RDM matrices must have shape (n, n) or (n_sets, n, n); got {m.shape}."
            )
        if check_symmetric and not np.allclose(m, m.transpose(0, 2, 1), equal_nan=True):
            raise CortexmapError(
                "RDM matrices are not symmetric; pass symmetric dissimilarity matrices "
                "(or check_symmetric=False to use the upper triangle)."
            )
        return cls(_triu(m), m.shape[1], list(names) if names is not None else [], metric,
                   list(conditions) if conditions is not None else None)

    @classmethod
    def concat(cls, rdms: Sequence[RDMs]) -> RDMs:
        """Stack RDM sets over the same conditions into one set."""
        rdms = list(rdms)
        if not rdms:
            raise CortexmapError("RDMs.concat got an empty list; pass at least one RDMs object.")
        n = rdms[0].n_conditions
        for k, r in enumerate(rdms[1:], start=1):
            if r.n_conditions != n:
                raise CortexmapError(
                    f"RDM set 0 has {n} conditions but set {k} has {r.n_conditions}; only RDMs "
                    "over the same stimuli can be concatenated."
                )
        metrics = {r.metric for r in rdms}
        # descriptors carried by any part; RDMs without one get "" for it
        keys = list(dict.fromkeys(k for r in rdms for k in r.descriptors))
        desc = {k: [v for r in rdms for v in r.descriptors.get(k, [""] * len(r))] for k in keys}
        return cls(
            np.concatenate([r.vectors for r in rdms], axis=0), n,
            [name for r in rdms for name in r.names],
            metrics.pop() if len(metrics) == 1 else "mixed", rdms[0].conditions, desc,
        )

    # -- interop -------------------------------------------------------------------------------
    def to_rsatoolbox(self):
        """Convert to ``rsatoolbox.rdm.RDMs`` (needs rsatoolbox installed): names in
        rdm_descriptors["name"], condition labels in pattern_descriptors["conditions"]."""
        rt = rsatoolbox_module()
        pattern_descriptors = {"index": list(range(self.n_conditions))}
        if self.conditions is not None:
            pattern_descriptors["conditions"] = list(self.conditions)
        return rt.rdm.RDMs(
            dissimilarities=self.vectors.copy(),
            dissimilarity_measure=_TO_RSATOOLBOX.get(self.metric, self.metric),
            rdm_descriptors={**{k: list(v) for k, v in self.descriptors.items()},
                             "name": list(self.names), "index": list(range(len(self)))},
            pattern_descriptors=pattern_descriptors,
        )

    @classmethod
    def from_rsatoolbox(cls, obj, names: Sequence[str] | None = None) -> RDMs:
        """Convert from ``rsatoolbox.rdm.RDMs``. Names come from ``names``, else the rdm
        descriptor "name", else "rdm0", "rdm1", ...; condition labels from a pattern descriptor
        such as "conditions" or "conds" when present."""
        if not (hasattr(obj, "get_vectors") and hasattr(obj, "n_cond")):
            raise CortexmapError(
                f"Expected an rsatoolbox.rdm.RDMs object; got {type(obj).__name__}."
            )
        vectors = np.asarray(obj.get_vectors(), dtype=np.float64)
        if names is None:
            desc = getattr(obj, "rdm_descriptors", {}) or {}
            names = [str(n) for n in desc["name"]] if "name" in desc else None
        conditions = None
        pdesc = getattr(obj, "pattern_descriptors", {}) or {}
        for key in _CONDITION_KEYS:
            if key in pdesc and len(pdesc[key]) == obj.n_cond:
                conditions = [str(c) for c in pdesc[key]]
                break
        measure = obj.dissimilarity_measure or "unknown"
        desc = getattr(obj, "rdm_descriptors", {}) or {}
        descriptors = {str(k): [str(x) for x in v] for k, v in desc.items()
                       if k not in ("name", "index") and len(v) == len(vectors)}
        return cls(vectors, int(obj.n_cond), list(names) if names is not None else [],
                   _FROM_RSATOOLBOX.get(measure, measure), conditions, descriptors)

    # -- tables and files ----------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (rdm, pair): rdm, i, j, cond_i, cond_j, dissimilarity."""
        i, j = triu_indices(self.n_conditions)
        conds = self.conditions or [str(k) for k in range(self.n_conditions)]
        c = np.asarray(conds, dtype=object)
        k = len(self)
        return pd.DataFrame({
            "rdm": np.repeat(np.asarray(self.names, dtype=object), self.n_pairs),
            "i": np.tile(i, k), "j": np.tile(j, k),
            "cond_i": np.tile(c[i], k), "cond_j": np.tile(c[j], k),
            "dissimilarity": self.vectors.ravel(),
        })

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write a ``.npz`` file atomically (vectors + JSON metadata); returns the path."""
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        check_output_file(p, overwrite)
        meta = {"format": "cortexmap.RDMs", "version": 1, "n_conditions": self.n_conditions,
                "names": self.names, "metric": self.metric, "conditions": self.conditions,
                "descriptors": self.descriptors}
        buf = io.BytesIO()
        np.savez_compressed(buf, vectors=self.vectors, meta=np.array(json.dumps(meta)))
        with atomic_path(p) as tmp:
            tmp.write_bytes(buf.getvalue())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> RDMs:
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.exists():
            raise CortexmapError(f"RDM file {p} does not exist; check the path.")
        import zipfile

        why = ""
        try:
            z = np.load(p, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
                why = (f" (it holds a bare array of shape {np.shape(z)}; build RDMs from it "
                       "with RDMs.from_matrices or compute them with `cortexmap rdm`)")
                raise ValueError("not an .npz archive")
            with z:
                vectors = z["vectors"]
                meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            if not why and p.stat().st_size == 0:
                why = " (the file is empty)"
            elif not why and isinstance(exc, (zipfile.BadZipFile, EOFError)):
                why = f" (it is truncated or not a zip archive: {exc})"
            raise CortexmapError(
                f"{p} is not an RDM file written by cortexmap (RDMs.save){why}; re-create it "
                "with `cortexmap rdm` or RDMs.save."
            ) from exc
        return cls(vectors, meta["n_conditions"], meta["names"], meta["metric"],
                   meta.get("conditions"), meta.get("descriptors") or {})


# ----------------------------------------------------------------------------------------------
# Computation
# ----------------------------------------------------------------------------------------------
def _unit_blocks(n_units: int, block: int = _BLOCK_UNITS):
    for start in range(0, n_units, block):
        yield slice(start, min(start + block, n_units))


def _checked_block(x: np.ndarray, sl: slice, name: str) -> np.ndarray:
    """float64 copy of columns ``sl`` of ``x``, with a NaN/inf check that names the location."""
    blk = np.asarray(x[:, sl], dtype=np.float64)
    if not np.isfinite(blk).all():
        r, c = np.argwhere(~np.isfinite(blk))[0]
        raise CortexmapError(
            f"{name} contains NaN/inf values (first at condition {int(r)}, unit "
            f"{int(c) + sl.start}); remove or impute them before computing RDMs."
        )
    return blk


def _gram(
    x: np.ndarray, center: str | None, name: str, single: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrix of the rows of ``x`` after optional centering, accumulated in float64.

    center: None, "rows" (subtract each pattern's mean over units: correlation distance) or
    "columns" (subtract the mean pattern: leaves Euclidean distances unchanged but avoids the
    cancellation of ``|a|^2 + |b|^2 - 2ab`` when patterns share a large offset).
    single: multiply float32 blocks of ``_SINGLE_BLOCK_UNITS`` units (twice the BLAS speed)
    and accumulate the block products in float64; centering is done in float64 first; the
    float32 rounding of the centred values leaves correlation distances within ~1e-6.
    Returns (gram (n, n), row_means (n,)).
    """
    n, p = x.shape
    mean = np.zeros(n)
    if center == "rows":  # first pass: pattern means, float64 accumulation even for float32
        for sl in _unit_blocks(p):
            mean += _checked_block(x, sl, name).sum(axis=1)
        mean /= p
    gram = np.zeros((n, n))
    for sl in _unit_blocks(p, _SINGLE_BLOCK_UNITS if single else _BLOCK_UNITS):
        if center == "rows":  # finiteness already checked in the first pass
            blk = np.asarray(x[:, sl], dtype=np.float64) - mean[:, None]
        else:
            blk = _checked_block(x, sl, name)
            if center == "columns":
                blk = blk - blk.mean(axis=0, keepdims=True)
        blk = np.ascontiguousarray(blk, dtype=np.float32 if single else np.float64)
        gram += blk @ blk.T  # numpy dispatches A @ A.T to BLAS syrk
    return gram, mean


def _sq_dists_from_gram(gram: np.ndarray) -> np.ndarray:
    d = np.diag(gram)
    return np.maximum(d[:, None] + d[None, :] - 2 * gram, 0.0)


def _rdm_correlation(x: np.ndarray, name: str, single: bool = False) -> np.ndarray:
    gram, mean = _gram(x, "rows", name, single)
    var = np.diag(gram).copy()
    scale = np.sqrt(np.abs(var))
    sd = scale / np.sqrt(x.shape[1])
    # constant up to rounding: no spread relative to the pattern's own level, or relative to
    # the most variable pattern
    flat = np.flatnonzero((sd <= 1e-10 * np.abs(mean))
                          | (scale <= 1e-12 * max(float(scale.max(initial=0.0)), 1e-300)))
    if flat.size:
        raise CortexmapError(
            f"{name}: condition(s) {flat.tolist()} have a constant pattern (zero variance over "
            "units), so their correlation distance is undefined; drop these conditions, add "
            "units, or use metric='euclidean'."
        )
    corr = gram / scale[:, None] / scale[None, :]
    return _triu(1.0 - corr)


def _rdm_cosine(x: np.ndarray, name: str, single: bool = False) -> np.ndarray:
    gram, _ = _gram(x, None, name, single)
    norm = np.sqrt(np.diag(gram))
    zero = np.flatnonzero(norm == 0)
    if zero.size:
        raise CortexmapError(
            f"{name}: condition(s) {zero.tolist()} have an all-zero pattern, so their cosine "
            "distance is undefined; drop these conditions or use metric='euclidean'."
        )
    return _triu(1.0 - gram / norm[:, None] / norm[None, :])


def _rdm_euclidean(
    x: np.ndarray, name: str, squared_per_unit: bool, single: bool = False
) -> np.ndarray:
    gram, _ = _gram(x, "columns", name, single)
    d2 = _triu(_sq_dists_from_gram(gram))
    if squared_per_unit:
        return d2 / x.shape[1]
    return np.sqrt(d2)


def _labels(values: Any, n: int, what: str) -> np.ndarray:
    if values is None:
        raise CortexmapError(
            f"metric='crossnobis' needs `{what}` labels, one per row of patterns; pass "
            f"{what}=[...] (e.g. the run/session of each measurement)."
        )
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise CortexmapError(
            f"`{what}` must hold one label per row of patterns ({n} rows); got shape {arr.shape}."
        )
    return arr


def _first_appearance_unique(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    return labels[np.sort(first)]


def _rdm_crossnobis(
    x: np.ndarray, conditions: Any, runs: Any, noise: np.ndarray | None, name: str
) -> tuple[np.ndarray, list[str]]:
    """Leave-one-run-out crossvalidated (squared) Mahalanobis distance, as rsatoolbox.

    For each run r: A = condition means of all other runs, B = condition means of run r,
    K = A Σ⁻¹ Bᵀ, d_ij = K_ii + K_jj - K_ij - K_ji; averaged over runs and divided by n_units.
    Returns (vector, condition labels in order of first appearance).
    """
    n_obs, p = x.shape
    cond = _labels(conditions, n_obs, "conditions")
    run = _labels(runs, n_obs, "runs")
    run_values = np.unique(run)
    if run_values.size < 2:
        raise CortexmapError(
            f"metric='crossnobis' needs at least 2 runs to crossvalidate; `runs` has only "
            f"{run_values.size} distinct value(s). Pass the run label of each measurement, or use "
            "metric='sqeuclidean' on run-averaged patterns."
        )
    cond_values = _first_appearance_unique(cond)
    check_conditions(len(cond_values), name)
    lut = {c: i for i, c in enumerate(cond_values.tolist())}
    cond_idx = np.array([lut[c] for c in cond.tolist()])
    k = len(cond_values)
    run_idx = np.searchsorted(run_values, run)
    # Per-run condition sums via one-hot matmuls (BLAS), and counts.
    onehot = np.zeros((n_obs, k))
    onehot[np.arange(n_obs), cond_idx] = 1.0
    sums = np.stack([onehot[run_idx == r].T @ x[run_idx == r] for r in range(run_values.size)])
    counts = np.stack([onehot[run_idx == r].sum(0) for r in range(run_values.size)])
    missing = np.argwhere(counts == 0)
    if missing.size:
        r, c = missing[0]
        raise CortexmapError(
            f"metric='crossnobis': condition {cond_values[c]!r} has no measurement in run "
            f"{run_values[r]!r}; every condition must appear in every run (drop that run or "
            "condition)."
        )
    total_s, total_c = sums.sum(0), counts.sum(0)
    acc = np.zeros((k, k))
    for r in range(run_values.size):
        test = sums[r] / counts[r][:, None]
        train = (total_s - sums[r]) / (total_c - counts[r])[:, None]
        kern = train @ (noise @ test.T if noise is not None else test.T)
        d = np.diag(kern)
        acc += d[None, :] + d[:, None] - kern - kern.T
    vec = _triu(acc) / run_values.size / p
    return vec, [str(c) for c in cond_values]


def compute_rdms(
    patterns: np.ndarray | Sequence[np.ndarray] | dict[str, np.ndarray],
    metric: str = "correlation",
    names: Sequence[str] | None = None,
    runs: Sequence | np.ndarray | None = None,
    conditions: Sequence | np.ndarray | None = None,
    noise: np.ndarray | None = None,
    precision: str = "auto",
) -> RDMs:
    """Compute RDMs from activation or voxel patterns.

    Args:
        patterns: (n_conditions, n_units), a stack (n_sets, n_conditions, n_units), a list of
            2-D arrays with the same number of rows (e.g. layers with different unit counts),
            or a dict {name: (n_conditions, ...)} such as ``Extractor.extract()`` returns (names
            from the keys, unit dimensions flattened). Arrays in a list must be 2-D: flatten
            conv maps (n, C, H, W) first.
            For "crossnobis" the rows are measurements (n_obs, n_units) labelled by
            ``conditions`` and ``runs``.
        metric: "correlation" (1 - Pearson r between patterns), "euclidean" (plain Euclidean
            distance, = scipy ``pdist``), "sqeuclidean" (squared distance / n_units, =
            rsatoolbox "euclidean"), "cosine" (1 - cosine similarity), "crossnobis"
            (leave-one-run-out crossvalidated Mahalanobis / n_units, = rsatoolbox "crossnobis").
        names: one name per RDM (default "rdm0", "rdm1", ...).
        runs: crossnobis only: run label of each row.
        conditions: crossnobis: condition label of each row (RDM rows follow first
            appearance); other metrics: optional labels of the n_conditions rows.
        noise: crossnobis only: optional (n_units, n_units) noise precision matrix
            (default identity).
        precision: "double" (= "auto", default) multiplies float64 blocks: results equal
            rsatoolbox/scipy to ~1e-12. "single" multiplies float32 blocks of 1024 units and
            sums the block products in float64: about twice as fast, but correlation distances
            can differ from double by ~1e-6 (float32 rounding of the centred patterns). Crossnobis
            always uses double.

    Returns:
        :class:`RDMs` with ``vectors`` (n_sets, n_pairs).
    """
    if metric not in METRICS:
        raise CortexmapError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if precision not in ("auto", "single", "double"):
        raise CortexmapError(
            f"precision must be 'auto', 'single' or 'double'; got {precision!r}."
        )
    if isinstance(patterns, dict):  # e.g. Extractor.extract(): {layer: (n, ...)}
        if names is None:
            names = list(patterns)
        patterns = [np.asarray(a).reshape(len(a), -1) for a in patterns.values()]
    if isinstance(patterns, (list, tuple)):
        sets = list(patterns)
        if not sets:
            raise CortexmapError("patterns is an empty list; pass at least one 2-D array.")
    else:
        arr = np.asarray(patterns)
        if arr.ndim == 2:
            sets = [arr]
        elif arr.ndim == 3:
            sets = list(arr)
        else:
            raise CortexmapError(
                f"patterns must have shape (n_conditions, n_units) or (n_sets, n_conditions, "
                f"n_units); got shape {arr.shape}. Flatten unit dimensions first, e.g. "
                "x.reshape(len(x), -1)."
            )
    if names is not None and len(names) != len(sets):
        raise CortexmapError(
            f"Got {len(names)} names for {len(sets)} pattern sets; give one name per set."
        )
    names = [str(n) for n in names] if names is not None else [f"rdm{i}" for i in range(len(sets))]
    if noise is not None:
        if metric != "crossnobis":
            raise CortexmapError("`noise` is only used with metric='crossnobis'.")
        noise = as_finite_array(noise, "noise", ndim=2)

    vectors, n_cond, labels = [], None, None
    for k, x in enumerate(sets):
        label = f"patterns[{k}]" if len(sets) > 1 else "patterns"
        x = np.asarray(x)
        if x.ndim != 2:
            raise CortexmapError(
                f"{label} must be 2-D (n_conditions, n_units); got shape {x.shape}. Flatten "
                "unit dimensions first, e.g. x.reshape(len(x), -1)."
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise CortexmapError(f"{label} must be a real numeric array; got dtype {x.dtype}.")
        if x.shape[1] == 0:
            raise CortexmapError(f"{label} has no units (shape {x.shape}).")
        if metric == "crossnobis":
            if noise is not None and noise.shape != (x.shape[1], x.shape[1]):
                raise CortexmapError(
                    f"noise must be ({x.shape[1]}, {x.shape[1]}) for {label}; got {noise.shape}."
                )
            _checked_block(x, slice(0, x.shape[1]), label)
            vec, labels = _rdm_crossnobis(np.asarray(x, dtype=np.float64), conditions, runs,
                                          noise, label)
            n = len(labels)
        else:
            n = x.shape[0]
            check_conditions(n, label)
            single = precision == "single"
            if metric == "correlation":
                vec = _rdm_correlation(x, label, single)
            elif metric == "cosine":
                vec = _rdm_cosine(x, label, single)
            else:
                vec = _rdm_euclidean(x, label, metric == "sqeuclidean", single)
        if n_cond is not None and n != n_cond:
            raise CortexmapError(
                f"patterns[0] has {n_cond} conditions but {label} has {n}; every set must "
                "describe the same stimuli."
            )
        n_cond = n
        vectors.append(vec)

    if metric != "crossnobis" and conditions is not None:
        labels = [str(c) for c in conditions]
    return RDMs(np.stack(vectors), n_cond, names, metric, labels)

"""Comparing RDMs: Pearson, Spearman, Kendall tau-a, cosine (and rho-a), all-pairs matrices.

Every method returns the full (n_a, n_b) matrix and equals ``rsatoolbox.rdm.compare`` on the same
vectors. Speed comes from working on whole stacks at once: the vectors are sorted in chunks of
rows with a radix sort (exact, see :func:`_sort_rows`), Pearson/Spearman/cosine are then one
matrix product, and Kendall tau-a sorts the reference once and counts discordant pairs per
vector exactly, with scipy's O(n log n) Fenwick-tree counter or, for categorical references,
with running counts per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator

from cortexmap.errors import CortexmapError
from cortexmap.rsa.cka import CKA_METHODS, cka
from cortexmap.rsa.rdm import RDMs, n_conditions_from_pairs, triu_indices

METHODS = ("pearson", "spearman", "kendall_tau_a", "cosine", "rho_a", "whitened_cosine",
           "whitened_pearson", *CKA_METHODS)
_ALIASES = {
    "corr": "pearson", "correlation": "pearson", "pearson": "pearson",
    "spearman": "spearman", "rho": "spearman",
    "kendall_tau_a": "kendall_tau_a", "tau-a": "kendall_tau_a", "tau_a": "kendall_tau_a",
    "cosine": "cosine", "rho_a": "rho_a", "rho-a": "rho_a",
    "whitened_cosine": "whitened_cosine", "cosine_cov": "whitened_cosine",
    "whitened_pearson": "whitened_pearson", "corr_cov": "whitened_pearson",
    "linear_cka": "cka", "rbf_cka": "cka_rbf",
    **{m: m for m in CKA_METHODS},
}

try:  # scipy's compiled discordant-pair counter (the one scipy.stats.kendalltau and rsatoolbox use)
    from scipy.stats._stats import _kendall_dis as _scipy_kendall_dis
except ImportError:  # pragma: no cover - private scipy API; fall back to the numpy counter
    _scipy_kendall_dis = None


def _alias_to_canonical(value):
    return _ALIASES.get(value, value) if isinstance(value, str) else value


#: A config field naming an RDM comparison method (aliases such as "corr" or "tau-a" accepted).
CompareMethod = Annotated[Literal[METHODS], BeforeValidator(_alias_to_canonical)]


def canonical_method(method: str) -> str:
    """Map a method name or alias (rsatoolbox names "corr", "tau-a", ...) to its canonical name."""
    try:
        return _ALIASES[method]
    except KeyError:
        hint = (" (rsatoolbox's 'kendall' is tau-b, which is not offered: use kendall_tau_a, "
                "the recommended variant for RDMs with ties)") if method in ("kendall", "tau-b") \
            else ""
        raise CortexmapError(
            f"Unknown comparison method {method!r}; choose one of {', '.join(METHODS)}{hint}."
        ) from None


def as_vectors(x: RDMs | np.ndarray | Sequence, name: str = "RDMs") -> np.ndarray:
    """(n_sets, n_pairs) float64 vectors from RDMs, rsatoolbox RDMs, or a 1-D/2-D array."""
    if isinstance(x, RDMs):
        return x.vectors
    if hasattr(x, "get_vectors") and hasattr(x, "dissimilarity_measure"):  # rsatoolbox RDMs
        return np.asarray(x.get_vectors(), dtype=np.float64)
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CortexmapError(f"{name} must be RDMs or a numeric array of RDM vectors.") from exc
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise CortexmapError(
            f"{name} must be RDMs or an array of upper-triangle vectors (n_sets, n_pairs); got "
            f"shape {v.shape}. Convert square matrices with RDMs.from_matrices."
        )
    # one summing pass screens for NaN/inf; only a non-finite total triggers the detailed check
    if not np.isfinite(v.sum()) and np.isinf(v).any():
        raise CortexmapError(f"{name} contains infinite dissimilarities; remove them.")
    return v


def _as_rdms(x, name: str) -> RDMs:
    """RDMs as they are; rsatoolbox RDMs converted; vectors wrapped (metric unknown)."""
    if isinstance(x, RDMs):
        return x
    if hasattr(x, "get_vectors") and hasattr(x, "dissimilarity_measure"):
        return RDMs.from_rsatoolbox(x)
    v = as_vectors(x, name)
    return RDMs(v, n_conditions_from_pairs(v.shape[1], name))


def _n_conditions(x) -> int | None:
    return x.n_conditions if isinstance(x, RDMs) else getattr(x, "n_cond", None)


def _parse_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of a and b with the NaN entries (missing pairs) dropped, as rsatoolbox does."""
    na, nb = _n_conditions(a), _n_conditions(b)
    va, vb = as_vectors(a, "rdms_a"), as_vectors(b, "rdms_b")
    if na is not None and nb is not None and na != nb:
        raise CortexmapError(
            f"rdms_a has {na} conditions but rdms_b has {nb}; both must describe the same "
            "stimuli in the same order."
        )
    if va.shape[1] != vb.shape[1]:
        raise CortexmapError(
            f"rdms_a vectors have {va.shape[1]} entries but rdms_b vectors have {vb.shape[1]}; "
            "both must describe the same stimuli (same number of conditions)."
        )
    if np.isfinite(va.sum()) and np.isfinite(vb.sum()):  # no missing pairs: the common case
        nan_a = nan_b = None
    else:
        nan_a, nan_b = np.isnan(va).any(0), np.isnan(vb).any(0)
    if nan_a is not None and (nan_a.any() or nan_b.any()):
        if not np.array_equal(nan_a, nan_b):
            raise CortexmapError(
                "rdms_a and rdms_b have missing (NaN) dissimilarities at different pairs; use "
                "RDMs with the same missing pairs."
            )
        keep = ~nan_a
        va, vb = va[:, keep], vb[:, keep]
    if va.shape[1] < 2:
        raise CortexmapError("RDMs have fewer than 2 valid dissimilarities; nothing to compare.")
    return va, vb


# ----------------------------------------------------------------------------------------------
# Ranks
# ----------------------------------------------------------------------------------------------
def _tie_groups(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tie groups of rows that are already sorted, found with flat 1-D operations.

    Returns (starts, counts, rows): for every group of equal values, its flat start index in
    ``s.ravel()``, its size and its row. Flat 1-D passes are much faster than accumulating
    along axis 1 of a (k, n) array.
    """
    k, n = s.shape
    new = np.ones((k, n), dtype=bool)
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, k * n))
    return starts, counts, starts // n


def _take_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(a, idx, axis=1)`` for 2-D arrays via one flat ``np.take``.

    take_along_axis broadcasts full index arrays for every axis; a flat take is several
    times faster on (k, n) arrays.
    """
    a = np.ascontiguousarray(a)
    return np.take(a.ravel(), idx + (np.arange(a.shape[0]) * a.shape[1])[:, None])


def _grid(v: np.ndarray, levels: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row affine map of [min, max] onto [0, levels): (offset, scale), each (k, 1).

    ``(v - offset) * scale`` truncated to an integer is non-decreasing in v (IEEE rounding is
    monotone), so sorting by it never inverts two distinct values in different cells.
    """
    lo = v.min(axis=1, keepdims=True)
    span = v.max(axis=1, keepdims=True) - lo
    return lo, np.where(span > 0, (levels - 16.0) / np.where(span > 0, span, 1.0), 0.0)


def _cells(v: np.ndarray, lo: np.ndarray, scale: np.ndarray, dtype) -> np.ndarray:
    tmp = np.subtract(v, lo)
    return np.multiply(tmp, scale, out=tmp).astype(dtype)


def _sort_rows_radix32(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two stable 16-bit radix passes (LSD) on a 32-bit grid; exact via argsort fallback."""
    k, n = v.shape
    lo, scale = _grid(v, 2.0**32)
    q = _cells(v, lo, scale, np.uint32)
    offsets = (np.arange(k) * n)[:, None]
    # work with flat (absolute) indices, shifted in place: one np.take per gather
    first = np.argsort(q.astype(np.uint16), axis=1, kind="stable")  # low 16 bits
    first += offsets
    high = np.take((q >> 16).astype(np.uint16).ravel(), first)
    second = np.argsort(high, axis=1, kind="stable")
    second += offsets
    order = np.take(first.ravel(), second)  # flat indices into v in sorted order
    s = np.take(v.ravel(), order)
    order -= offsets
    bad = np.flatnonzero((s[:, 1:] < s[:, :-1]).any(axis=1))  # values swapped by the grid
    if bad.size:
        order[bad] = np.argsort(v[bad], axis=1)
        s[bad] = _take_rows(v[bad], order[bad])
    return order, s


_FIX_ROUNDS = 8  # odd-even transposition rounds inside 16-bit cells before falling back


def _sort_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (order, sorted values); exact, 2-3x faster than ``np.argsort`` on float rows.

    Each row is mapped monotonically onto a 16-bit grid (affine rescale of [min, max], then
    truncation) and sorted by one stable 16-bit pass, which numpy runs as an O(n) radix sort.
    Values sharing a grid cell may still be out of order; they are adjacent, and a few rounds of
    odd-even transposition restricted to same-cell neighbours sort them (cells hold a handful
    of values at most when n is small against 65536). Rows still unsorted after
    ``_FIX_ROUNDS`` rounds (heavily clustered values) go through two radix passes on a 32-bit
    grid, and, failing that, ``np.argsort``: the result is always exact.
    """
    k, n = v.shape
    if n < 512:  # comparison sort is as fast for short rows
        order = np.argsort(v, axis=1)
        return order, _take_rows(v, order)
    v = np.ascontiguousarray(v)
    lo, scale = _grid(v, 2.0**16)
    cells = _cells(v, lo, scale, np.uint16)
    order = np.argsort(cells, axis=1, kind="stable")
    order += (np.arange(k) * n)[:, None]
    s = np.take(v.ravel(), order)
    # same-cell neighbours (the cells of the sorted values are non-decreasing along each row);
    # values in different cells are already in order, since the cell map is non-decreasing
    cell = np.take(cells.ravel(), order)
    same = np.flatnonzero((cell[:, 1:] == cell[:, :-1]).ravel())
    pos = same + same // (n - 1)  # flat index of the left element of each pair in (k, n)
    sf, of = s.ravel(), order.ravel()
    by_parity = [pos[pos % n % 2 == par] for par in (0, 1)]
    settled = False
    for _ in range(_FIX_ROUNDS):
        swapped = 0
        for p in by_parity:
            p = p[sf[p] > sf[p + 1]]
            if p.size:
                swapped += p.size
                sf[p], sf[p + 1] = sf[p + 1], sf[p].copy()
                of[p], of[p + 1] = of[p + 1], of[p].copy()
        if not swapped:  # a clean round: every cell is in order, hence every row
            settled = True
            break
    order -= (np.arange(k) * n)[:, None]
    if not settled:
        bad = np.flatnonzero((s[:, 1:] < s[:, :-1]).any(axis=1))  # cells too crowded to fix
        if bad.size:
            order[bad], s[bad] = _sort_rows_radix32(v[bad])
    return order, s


def _sorted_rank_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(order, average ranks of the sorted rows, any ties): order = argsort per row."""
    k, n = v.shape
    order, s = _sort_rows(v)
    if not (s[:, 1:] == s[:, :-1]).any():  # no ties anywhere: ranks are 1..n
        return order, np.broadcast_to(np.arange(1.0, n + 1), (k, n)), False
    starts, counts, _ = _tie_groups(s)
    avg = (starts % n) + (counts + 1) / 2.0  # mean of 1-based positions start+1 .. start+count
    return order, np.repeat(avg, counts).reshape(k, n), True


_ROW_CHUNK = 128  # rows per task: keeps the (chunk, n) temporaries in cache


def _map_row_chunks(fn, k: int, n_threads: int) -> list:
    """Run ``fn(slice)`` over chunks of rows, in threads (numpy sorts release the GIL)."""
    slices = [slice(i, min(i + _ROW_CHUNK, k)) for i in range(0, k, _ROW_CHUNK)]
    if n_threads > 1 and len(slices) > 1:
        with ThreadPoolExecutor(min(n_threads, len(slices))) as pool:
            return list(pool.map(fn, slices))
    return [fn(sl) for sl in slices]


def rank_rows(v: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of each row; = scipy ``rankdata``.

    Vectorized sorts over chunks of rows (in ``n_threads`` threads); (k, n) -> (k, n) float64.
    """
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    ranks = np.empty(v.shape)

    def one(sl: slice) -> None:
        order, ranks_sorted, _ = _sorted_rank_rows(v[sl])
        out = ranks[sl]  # a contiguous view: scatter through flat indices
        out.ravel()[order + (np.arange(len(order)) * v.shape[1])[:, None]] = ranks_sorted

    _map_row_chunks(one, len(v), n_threads)
    return ranks


def _tie_pairs_sorted(s: np.ndarray) -> np.ndarray:
    """Per row of a sorted array: number of tied pairs, sum over tie groups of c (c - 1) / 2."""
    _, counts, rows = _tie_groups(s)
    tied = counts > 1
    return np.bincount(rows[tied], weights=counts[tied] * (counts[tied] - 1) // 2,
                       minlength=s.shape[0]).astype(np.int64)


def _dense_ranks_sorted(s: np.ndarray) -> np.ndarray:
    """Dense 1-based ranks of rows that are already sorted (ties -> same rank)."""
    new = np.ones(s.shape, dtype=np.intp)
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:], casting="unsafe")
    return np.cumsum(new, axis=1, dtype=np.intp)


# ----------------------------------------------------------------------------------------------
# Kendall tau-a
# ----------------------------------------------------------------------------------------------
def _discordant_numpy(x_dense: np.ndarray, y_rank: np.ndarray) -> np.ndarray:
    """Discordant pairs per row, exact, pure numpy (bottom-up merge sort across all rows).

    Rows of ``x_dense`` are sorted (ties allowed); counts pairs i < j with x_i < x_j and
    y_i > y_j. Pairs tied in x are not discordant: sorting each x tie group by y first makes
    them non-inversions, so the count equals the strict inversions of the y sequence.
    """
    k, n = y_rank.shape
    m = int(y_rank.max()) + 2
    key = x_dense.astype(np.int64) * m + y_rank
    y = (np.sort(key, axis=1) % m).astype(np.int64)  # y in (x, y) lexicographic order
    size = 1 << int(np.ceil(np.log2(max(n, 2))))
    pad = np.full((k, size), m, dtype=np.int64)  # larger than any y and placed last: no inversions
    pad[:, :n] = y
    y = pad
    dis = np.zeros(k, dtype=np.int64)
    width = 1
    while width < size:
        blocks = y.reshape(k, size // (2 * width), 2 * width)
        is_right = np.zeros(2 * width, dtype=np.int64)
        is_right[width:] = 1
        # ties between the halves are not inversions: left elements sort first among equals
        merged = np.sort(blocks * 2 + is_right, axis=2)
        right = merged & 1
        left_seen = np.cumsum(1 - right, axis=2)
        dis += ((width - left_seen) * right).sum(axis=(1, 2))
        y = (merged >> 1).reshape(k, size)
        width *= 2
    return dis


def _discordant_scipy(x_dense: np.ndarray, y_rank: np.ndarray) -> np.ndarray:
    # the compiled counter wants writable C-contiguous intp buffers
    xs = np.require(x_dense, np.intp, ["C", "W"])
    ys = np.require(y_rank, np.intp, ["C", "W"])
    return np.fromiter((_scipy_kendall_dis(xs[i], ys[i]) for i in range(len(xs))),
                       dtype=np.int64, count=len(xs))


_FEW_LEVELS = 4  # references with at most this many distinct values use level counting


def _inversions_few_levels(y: np.ndarray, n_levels: int) -> np.ndarray:
    """Strict inversions per row of ``y`` (k, n) with values in 1..n_levels, exact.

    inversions = sum over positions p of #{i < p : y_i > y_p}
               = sum over levels b of sum over p with y_p < b of #{i <= p : y_i = b},
    i.e. one running count per level: O(n_levels * n) per row, no sorting and no Python loop
    over rows (categorical model RDMs have 2-4 distinct dissimilarities).
    """
    k, n = y.shape
    if n_levels <= 4 and n < 2**16:
        # all running counts in one cumsum: level b counts live in bits 16 (b - 1) .. 16 b - 1
        packed = np.cumsum(np.left_shift(np.uint64(1), (16 * (y - 1)).astype(np.uint64)),
                           axis=1, dtype=np.uint64)
        higher = packed >> (16 * y).astype(np.uint64)  # counts of the levels above y_p
        # sum of the four 16-bit fields lands in the top 16 bits (no field sum exceeds n)
        total = (higher * np.uint64(0x0001000100010001)) >> np.uint64(48)
        return total.sum(axis=1, dtype=np.int64)
    inv = np.zeros(len(y), dtype=np.int64)
    for b in range(2, n_levels + 1):
        running = np.cumsum(y == b, axis=1, dtype=np.int32)
        inv += np.where(y < b, running, 0).sum(axis=1, dtype=np.int64)
    return inv


def _tau_a_chunk(
    vectors: np.ndarray, y_rank: np.ndarray, y_ties: int, n_levels: int, backend: str
) -> np.ndarray:
    k, n = vectors.shape
    tot = n * (n - 1) // 2
    order, xs = _sort_rows(vectors)
    if (xs[:, 1:] == xs[:, :-1]).any():
        x_dense = _dense_ranks_sorted(xs)
        x_ties = _tie_pairs_sorted(xs)
    else:  # no ties: dense ranks are 1..n
        x_dense = np.broadcast_to(np.arange(1, n + 1, dtype=np.intp), (k, n))
        x_ties = np.zeros(k, dtype=np.int64)
    ys = np.take(y_rank, order)  # reference ranks in each row's x order
    joint = np.zeros(k, dtype=np.int64)
    has_ties = x_ties > 0
    few = backend != "numpy" and n_levels <= _FEW_LEVELS
    if has_ties.any() and (y_ties > 0 or few):
        # keys are already sorted except inside x-tie groups: timsort ("stable") is ~linear here
        key = np.sort(x_dense[has_ties].astype(np.int64) * (n + 2) + ys[has_ties], axis=1,
                      kind="stable")
        joint[has_ties] = _tie_pairs_sorted(key)
        if few:  # y sorted inside x-tie groups: pairs tied in x are no longer inversions
            ys = ys.copy()
            ys[has_ties] = key % (n + 2)
    if few:
        dis = _inversions_few_levels(ys, n_levels)
    elif backend == "numpy":
        dis = _discordant_numpy(x_dense, ys)
    else:
        dis = _discordant_scipy(x_dense, ys)
    return (tot - x_ties - y_ties + joint - 2 * dis) / tot


def tau_a_one_reference(
    vectors: np.ndarray, reference: np.ndarray, backend: str = "auto", n_threads: int = 2
) -> np.ndarray:
    """Kendall tau-a of every row of ``vectors`` (k, n) with ``reference`` (n,), exact with ties.

    tau_a = (n_concordant - n_discordant) / (n (n - 1) / 2)
          = (tot - x_ties - y_ties + joint_ties - 2 discordant) / tot.
    The reference is sorted once; each row is sorted once (vectorized over chunks of rows, in
    ``n_threads`` threads); discordant pairs are counted in O(n log n) per row. backend:
    "auto"/"scipy" (scipy's compiled Fenwick-tree counter, the one ``scipy.stats.kendalltau``
    uses) or "numpy" (vectorized merge sort, no private scipy API).
    """
    if backend not in ("auto", "scipy", "numpy"):
        raise CortexmapError(f"Unknown backend {backend!r}; use 'auto', 'scipy' or 'numpy'.")
    if backend == "scipy" and _scipy_kendall_dis is None:
        raise CortexmapError("backend='scipy' needs scipy.stats._stats._kendall_dis.")
    if backend == "auto":
        backend = "numpy" if _scipy_kendall_dis is None else "scipy"
    vectors = np.atleast_2d(vectors)
    n = vectors.shape[1]
    ref_order = np.argsort(reference, kind="stable")
    ref_sorted = reference[ref_order][None, :]
    y_ties = int(_tie_pairs_sorted(ref_sorted)[0])
    y_rank = np.empty(n, dtype=np.intp)
    y_rank[ref_order] = _dense_ranks_sorted(ref_sorted)[0]  # 1-based dense ranks
    n_levels = int(y_rank.max())
    parts = _map_row_chunks(
        lambda sl: _tau_a_chunk(vectors[sl], y_rank, y_ties, n_levels, backend),
        len(vectors), n_threads)
    return np.clip(np.concatenate(parts), -1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def _cosine_matrix(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    na = np.sqrt(np.einsum("ij,ij->i", va, va))
    nb = np.sqrt(np.einsum("ij,ij->i", vb, vb))
    # rsatoolbox convention: a zero-length vector has similarity 0 with everything
    na_safe, nb_safe = np.where(na > 0, na, 1.0), np.where(nb > 0, nb, 1.0)
    # a few reference vectors: einsum avoids waking the BLAS thread pool for a mat-vec
    dots = np.einsum("ij,kj->ik", va, vb) if len(vb) <= 4 else va @ vb.T
    sim = dots / na_safe[:, None] / nb_safe[None, :]
    sim[na == 0, :] = 0.0
    sim[:, nb == 0] = 0.0
    return sim


def _whiten(v: np.ndarray) -> np.ndarray:
    """RDM vectors -> vectorized double-centred second-moment matrices [G_i<j, G_ii].

    G = -1/2 H D H (H the centring matrix) is the pattern second moment implied by a
    (squared-distance) RDM; comparing G instead of D removes the dependence between the
    dissimilarities that share a condition under i.i.d. pattern noise (Diedrichsen et al. 2021;
    rsatoolbox's "cosine_cov" / "corr_cov" without a pattern covariance). (k, n_pairs) ->
    (k, n_pairs + n).
    """
    from scipy import sparse

    n = n_conditions_from_pairs(v.shape[1])
    i, j = triu_indices(n)
    pairs = np.arange(len(i))
    incidence = sparse.csr_matrix(
        (np.ones(2 * len(i)), (np.r_[pairs, pairs], np.r_[i, j])), shape=(len(i), n))
    row_mean = np.asarray((incidence.T @ v.T).T) / n  # (k, n): mean of each RDM row
    grand = row_mean.mean(axis=1, keepdims=True)
    # off-diagonal entries appear twice in G: weight sqrt(2) so the dot product is Frobenius
    off = -0.5 * np.sqrt(2.0) * (v - row_mean[:, i] - row_mean[:, j] + grand)
    diag = row_mean - 0.5 * grand
    return np.concatenate([off, diag], axis=1)


def compare(
    rdms_a: RDMs | np.ndarray,
    rdms_b: RDMs | np.ndarray,
    method: str = "spearman",
    n_threads: int = 2,
) -> np.ndarray:
    """Similarity of every RDM in ``rdms_a`` with every RDM in ``rdms_b``.

    Args:
        rdms_a, rdms_b: :class:`RDMs`, rsatoolbox RDMs, or arrays of upper-triangle vectors
            (n_pairs,) / (n_sets, n_pairs). NaN entries (missing pairs) are dropped when both
            sides miss the same pairs, as in rsatoolbox.
        method: "pearson" (rsatoolbox "corr"), "spearman", "kendall_tau_a" ("tau-a"),
            "cosine", "rho_a" (Spearman without tie correction, rsatoolbox "rho-a"), or the
            whitened "whitened_cosine" / "whitened_pearson" (rsatoolbox "cosine_cov" /
            "corr_cov": comparison of the implied second-moment matrices, recommended for
            crossnobis / Euclidean RDMs).
        n_threads: threads for Kendall tau-a counting.

    Returns:
        (len(rdms_a), len(rdms_b)) float64 matrix.
    """
    method = canonical_method(method)
    if method in CKA_METHODS:
        kernel, debiased = CKA_METHODS[method]
        return cka(_as_rdms(rdms_a, "rdms_a"), _as_rdms(rdms_b, "rdms_b"), kernel=kernel,
                   debiased=debiased)
    va, vb = _parse_pair(rdms_a, rdms_b)
    if method == "cosine":
        return _cosine_matrix(va, vb)
    if method in ("whitened_cosine", "whitened_pearson"):
        if va.shape[1] != as_vectors(rdms_a).shape[1]:
            raise CortexmapError(
                f"method={method!r} needs complete RDMs; these have missing (NaN) pairs. Use "
                "cosine/pearson, or drop the conditions with missing pairs."
            )
        if method == "whitened_pearson":
            va, vb = va - va.mean(1, keepdims=True), vb - vb.mean(1, keepdims=True)
        return _cosine_matrix(_whiten(va), _whiten(vb))
    if method == "pearson":
        return _cosine_matrix(va - va.mean(1, keepdims=True), vb - vb.mean(1, keepdims=True))
    if method in ("spearman", "rho_a"):
        if len(vb) > len(va):  # rank the smaller side once, stream over the larger one
            return compare(vb, va, method, n_threads).T
        n = va.shape[1]
        rb = rank_rows(vb)
        rb -= rb.mean(1, keepdims=True)
        norm_b = np.sqrt(np.einsum("ij,ij->i", rb, rb))
        # centred ranks 1..n in sorted order: the ranks of every row without ties
        centred = np.arange(1.0, n + 1) - (n + 1) / 2.0
        norm_untied = np.sqrt(n * (n * n - 1) / 12.0)

        def one(sl: slice) -> np.ndarray:
            order, ranks_sorted, ties = _sorted_rank_rows(va[sl])
            if not ties and len(rb) <= 4:
                # no scatter back: gather the few reference ranks in each row's sorted order
                dots = np.stack([np.einsum("ij,j->i", np.take(r, order), centred) for r in rb],
                                axis=1)  # einsum: no BLAS thread wake-up for a mat-vec
                if method == "rho_a":
                    return dots * (12.0 / (n**3 - n))
                sim = dots / norm_untied / np.where(norm_b > 0, norm_b, 1.0)
                sim[:, norm_b == 0] = 0.0
                return sim
            ra = np.empty(order.shape)
            ra.ravel()[order + (np.arange(len(order)) * n)[:, None]] = ranks_sorted
            ra -= ra.mean(1, keepdims=True)
            if method == "spearman":
                return _cosine_matrix(ra, rb)
            return ra @ rb.T * (12.0 / (n**3 - n))

        return np.concatenate(_map_row_chunks(one, len(va), n_threads), axis=0)
    # Kendall tau-a: loop over the smaller side as the shared reference (tau-a is symmetric).
    if len(vb) <= len(va):
        return np.stack([tau_a_one_reference(va, ref, n_threads=n_threads) for ref in vb], axis=1)
    return np.stack([tau_a_one_reference(vb, ref, n_threads=n_threads) for ref in va], axis=0)


def match_conditions(a: RDMs, b: RDMs, labels: tuple[str, str] = ("A", "B")) -> RDMs:
    """``b`` with its conditions reordered to ``a``'s order, matched by condition label.

    Two RDM sets compare entry by entry, so the same stimulus must sit at the same position in
    both. When both carry labels, ``b`` is reordered to match ``a``; labels that do not match
    (or repeat) are an error naming them. Without labels on either side the order is taken as
    it is (the caller is told by a warning).
    """
    import warnings

    if a.n_conditions != b.n_conditions:
        raise CortexmapError(
            f"{labels[0]} has {a.n_conditions} conditions but {labels[1]} has {b.n_conditions}; "
            "compare RDMs computed on the same stimuli."
        )
    if a.conditions is None or b.conditions is None:
        warnings.warn(
            f"{labels[0] if a.conditions is None else labels[1]} has no condition labels, so "
            "the conditions are assumed to be in the same order in both; save RDMs with "
            "condition labels (e.g. `cortexmap rdm --conditions`) to have them checked.",
            UserWarning, stacklevel=2)
        return b
    for name, conds in zip(labels, (a.conditions, b.conditions), strict=True):
        if len(set(conds)) != len(conds):
            dup = sorted({c for c in conds if conds.count(c) > 1})[:5]
            raise CortexmapError(f"{name} repeats the condition labels {dup}; labels must be "
                                 "unique to match conditions.")
    only_a = [c for c in a.conditions if c not in set(b.conditions)]
    only_b = [c for c in b.conditions if c not in set(a.conditions)]
    if only_a or only_b:
        raise CortexmapError(
            f"The RDMs describe different conditions: {labels[0]} has {only_a[:5]} that "
            f"{labels[1]} lacks, and {labels[1]} has {only_b[:5]} that {labels[0]} lacks; "
            "compare RDMs computed on the same stimuli (labels must match)."
        )
    if a.conditions == b.conditions:
        return b
    pos = {c: k for k, c in enumerate(b.conditions)}
    return b.subset_conditions([pos[c] for c in a.conditions])

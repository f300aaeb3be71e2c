"""Crossnobis searchlight against rsatoolbox's per-sphere calc_rdm, same spheres, same data.

A simulated subject on the 2 mm MNI152 mask: 92 conditions x 4 runs of single-run patterns,
radius 6 mm, noise precision "shrinkage_diag" estimated per sphere from the deviations of each
run's pattern from the condition mean. Peer: for each sphere, rsatoolbox 0.3
``prec_from_residuals`` + ``calc_rdm(method="crossnobis", cv_descriptor="runs")`` (what a user
writes today; rsatoolbox's own searchlight has no noise precision), timed on a subset of
spheres. cortexmap: its sphere RDMs on every centre of a block of the mask, and
``crossnobis_searchlight`` (RDMs + comparison with 4 model RDMs) over the same block. Both are
timed twice in the same run, with one BLAS thread (how dask workers run) and with the default
threads; CPU time is reported next to wall time (shared machines).

``CORTEXMAP_BENCH_CROSSNOBIS_VOXELS``: size of the block of the mask around its centre of mass
(default 12000), or ``all``: the whole 2 mm mask (about 235k voxels) through
``crossnobis_searchlight`` on a dask LocalCluster of ``CORTEXMAP_BENCH_WORKERS`` (default 2)
single-threaded workers, wall and CPU time of all processes measured.

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_crossnobis``.
"""

from __future__ import annotations

import os
import time

import nibabel as nib
import numpy as np

from benchmarks.bench_rsa import _best_cpu

N_COND, N_RUNS, RADIUS, N_PEER = 92, 4, 6.0, 60
THREADS = ((1, "1"), (None, "default"))


def _subject(n_voxels_max: int | None = None):
    from cortexmap.brain.io import BrainData, BrainMasker
    from cortexmap.brain.phantom import mni_mask

    img = mni_mask(2)
    if n_voxels_max is not None:  # a block of the mask around its centre of mass
        data = np.asarray(img.dataobj).astype(bool)
        ijk = np.argwhere(data)
        order = np.argsort(np.linalg.norm(ijk - ijk.mean(0), axis=1))[:n_voxels_max]
        keep = np.zeros_like(data)
        keep[tuple(ijk[order].T)] = True
        img = nib.Nifti1Image(keep.astype(np.uint8), img.affine)
    masker = BrainMasker(img)
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((N_COND, masker.n_voxels))
    conds = np.tile([f"c{i:02d}" for i in range(N_COND)], N_RUNS)
    runs = np.repeat(np.arange(N_RUNS), N_COND).astype(str)
    data = signal[np.tile(np.arange(N_COND), N_RUNS)] + 2.0 * rng.standard_normal(
        (N_COND * N_RUNS, masker.n_voxels))
    return BrainData(data, conds, masker, runs=runs), masker.n_voxels


def _models(order):
    from cortexmap.rsa import RDMs

    return RDMs(np.random.default_rng(1).random((4, N_COND * (N_COND - 1) // 2)), N_COND,
                conditions=order)


def _peer(sub, neighbors):
    """rsatoolbox per sphere: noise precision from the residuals, then the crossnobis RDM.
    Returns the function to time (the residuals of the whole mask are computed once, before)."""
    import rsatoolbox
    from rsatoolbox.data.noise import prec_from_residuals

    from cortexmap.brain.crossnobis import default_residuals

    order = sub.condition_names  # c00..c91: already rsatoolbox's sorted order
    resid, dof = default_residuals(sub.data, np.array([order.index(c) for c in sub.conditions]))
    return lambda: _peer_rdms(sub, neighbors, resid, dof, rsatoolbox, prec_from_residuals)


def _peer_rdms(sub, neighbors, resid, dof, rsatoolbox, prec_from_residuals) -> np.ndarray:
    out = []
    for row in neighbors:
        cols = row[row >= 0]
        ds = rsatoolbox.data.Dataset(sub.data[:, cols], obs_descriptors={
            "conds": sub.conditions, "runs": sub.runs})
        prec = prec_from_residuals(resid[:, cols], dof=dof, method="shrinkage_diag")
        out.append(rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="conds",
                                           cv_descriptor="runs", noise=prec).get_vectors()[0])
    return np.array(out)


def _block(n_block: int) -> str:
    from threadpoolctl import threadpool_limits

    from cortexmap.brain.crossnobis import _prepare, chunk_crossnobis, crossnobis_searchlight
    from cortexmap.brain.phantom import mni_mask
    from cortexmap.brain.searchlight import make_spheres

    sub, n_vox = _subject(n_block)
    spheres = make_spheres(sub.masker, RADIUS)
    n = len(spheres)
    pick = np.linspace(0, n - 1, N_PEER).astype(int)
    models = _models(sub.condition_names)
    n_brain = int(np.asarray(mni_mask(2).dataobj).astype(bool).sum())
    rows, err, est = [], 0.0, []
    peer = _peer(sub, spheres.neighbors[pick])
    for limit, label in THREADS:
        with threadpool_limits(limit):
            t_peer, c_peer = _best_cpu(peer)
            ref = _best_cpu.last
            t_rdm, c_rdm = _best_cpu(lambda: chunk_crossnobis(
                _prepare(sub, sub.condition_names, None, None, "shrinkage_diag"),
                spheres.neighbors), repeat=2)
            err = max(err, np.abs(_best_cpu.last[pick] - ref).max() / np.abs(ref).max())
            t_sl, c_sl = _best_cpu(lambda: crossnobis_searchlight(
                sub, models, RADIUS, noise="shrinkage_diag", scheduler="serial",
                progress=False))
        p, pc = t_peer / N_PEER, c_peer / N_PEER
        r, rc, s, sc = t_rdm / n, c_rdm / n, t_sl / n, c_sl / n
        rows.append(f"| {label} | {1e3 * p:.1f} ({1e3 * pc:.1f}) | {1e3 * r:.2f} "
                    f"({1e3 * rc:.2f}) | {1e3 * s:.2f} ({1e3 * sc:.2f}) | **{p / r:.0f}x** "
                    f"({pc / rc:.0f}x) | {p / s:.0f}x ({pc / sc:.0f}x) |")
        est.append(f"{sc * n_brain / 60:.1f} min CPU ({label} threads)")
    return "\n".join([
        "## Crossnobis searchlight (92 conditions x 4 runs, radius 6 mm, shrinkage_diag "
        "precision per sphere)",
        "",
        f"Command: `CORTEXMAP_BENCH_CROSSNOBIS_VOXELS={n_block} .venv/bin/python -m "
        f"benchmarks.run_all bench_crossnobis` ({n_vox:,}-voxel block of the 2 mm MNI152 mask, "
        f"{n:,} centres). Peer: rsatoolbox `prec_from_residuals` + `calc_rdm(method="
        f"\"crossnobis\")` per sphere on {N_PEER} of the centres, in the same run; cortexmap's "
        "sphere RDMs on every centre, and `crossnobis_searchlight` (RDMs compared with 4 model "
        "RDMs, serial).",
        "",
        "| BLAS threads | rsatoolbox per sphere ms wall (CPU) | cortexmap RDMs per sphere ms "
        "wall (CPU) | cortexmap searchlight per centre ms wall (CPU) | speed-up RDMs wall (CPU) "
        "| speed-up searchlight wall (CPU) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Max relative difference of the sphere RDMs to rsatoolbox: {err:.1e}. Whole 2 mm mask "
        f"({n_brain:,} voxels) from the block's per-centre searchlight cost: {', '.join(est)}. "
        "Targets: >= 30x faster than rsatoolbox per sphere; whole brain under 10 min on 2 "
        "cores (measure it with `CORTEXMAP_BENCH_CROSSNOBIS_VOXELS=all`).",
    ])


def _whole_brain() -> str:
    from threadpoolctl import threadpool_limits

    from cortexmap.brain.crossnobis import crossnobis_searchlight
    from cortexmap.brain.searchlight import make_spheres
    from cortexmap.utils.dask import close_client, get_client

    n_workers = int(os.environ.get("CORTEXMAP_BENCH_WORKERS", 2))
    sub, n_vox = _subject(None)
    neighbors = make_spheres(sub.masker, RADIUS).neighbors
    pick = np.linspace(0, len(neighbors) - 1, N_PEER).astype(int)
    peer = _peer(sub, neighbors[pick])
    with threadpool_limits(1):
        _, c_peer = _best_cpu(peer)
    client = get_client("local", n_workers=n_workers)
    try:
        def cpu() -> float:
            return time.process_time() + sum(client.run(time.process_time).values())

        c0, t0 = cpu(), time.perf_counter()
        res = crossnobis_searchlight(sub, _models(sub.condition_names), RADIUS,
                                     noise="shrinkage_diag", client=client, progress=False)
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    finally:
        close_client(client)
    n = res.n_centres
    peer_h = c_peer / N_PEER * n / 3600
    return "\n".join([
        "## Crossnobis searchlight, whole 2 mm brain (92 conditions x 4 runs, radius 6 mm, "
        "shrinkage_diag)",
        "",
        "Command: `CORTEXMAP_BENCH_CROSSNOBIS_VOXELS=all .venv/bin/python -m benchmarks.run_all "
        f"bench_crossnobis` ({n_workers} dask workers, one thread each).",
        "",
        "| task | wall s | CPU s (all processes) | CPU ms per centre |",
        "|---|---|---|---|",
        f"| cortexmap `crossnobis_searchlight`, {n_vox:,} voxels, {n:,} centres, 4 model RDMs "
        f"| {wall:.0f} | {cpu_s:.0f} | {1e3 * cpu_s / n:.2f} |",
        f"| rsatoolbox per sphere ({N_PEER} spheres timed, one thread), scaled to {n:,} "
        f"centres | - | {peer_h * 3600:.0f} ({peer_h:.1f} h) | {1e3 * c_peer / N_PEER:.1f} |",
        "",
        f"Speed-up (CPU): {c_peer / N_PEER / (cpu_s / n):.0f}x. Target: under 10 min (600 s) "
        f"wall on 2 cores: {'met' if wall < 600 else 'not met'} in this run.",
    ])


def run() -> str:
    setting = os.environ.get("CORTEXMAP_BENCH_CROSSNOBIS_VOXELS", "12000")
    return _whole_brain() if setting == "all" else _block(int(setting))

"""Crossnobis searchlight against rsatoolbox's per-sphere calc_rdm, same spheres, same data.

A simulated subject on the 2 mm MNI152 mask: 92 conditions x 4 runs of single-run patterns,
radius 6 mm, noise precision "shrinkage_diag" estimated per sphere from the deviations of each
run's pattern from the condition mean. Peer: for each sphere, rsatoolbox 0.3
``prec_from_residuals`` + ``calc_rdm(method="crossnobis", cv_descriptor="runs")`` (what a user
writes today; rsatoolbox's own searchlight has no noise precision), timed on a subset of
spheres; cortexmap's chunk kernel on the same spheres, then
``crossnobis_searchlight`` over a larger block of centres whose time is scaled to the whole
mask. Patterns are generated voxel by voxel with a fixed seed (no NIfTI files).

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_crossnobis``.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from benchmarks.bench_rsa import _best_cpu

N_COND, N_RUNS, RADIUS = 92, 4, 6.0
N_PEER, N_OURS = 40, 4000


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


def run() -> str:
    import rsatoolbox
    from rsatoolbox.data.noise import prec_from_residuals

    from cortexmap.brain.crossnobis import crossnobis_searchlight, default_residuals
    from cortexmap.brain.phantom import mni_mask
    from cortexmap.brain.searchlight import make_spheres
    from cortexmap.rsa import RDMs

    n_block = int(os.environ.get("CORTEXMAP_BENCH_CROSSNOBIS_VOXELS", 12000))
    sub, n_vox = _subject(n_block)
    order = sub.condition_names
    spheres = make_spheres(sub.masker, RADIUS)
    pick = np.linspace(0, len(spheres) - 1, N_PEER).astype(int)
    cond_idx = np.array([order.index(c) for c in sub.conditions])
    resid, dof = default_residuals(sub.data, cond_idx)

    def peer():
        out = []
        for k in pick:
            cols = spheres.neighbors[k][spheres.neighbors[k] >= 0]
            ds = rsatoolbox.data.Dataset(sub.data[:, cols], obs_descriptors={
                "conds": sub.conditions, "runs": sub.runs})
            prec = prec_from_residuals(resid[:, cols], dof=dof, method="shrinkage_diag")
            out.append(rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="conds",
                                               cv_descriptor="runs", noise=prec).get_vectors()[0])
        return np.array(out)

    def ours_subset():
        from cortexmap.brain.crossnobis import _prepare, chunk_crossnobis

        sums_t, counts, res_t, dof_ = _prepare(sub, order, None, None, "shrinkage_diag")
        return chunk_crossnobis(sums_t, counts, spheres.neighbors[pick], res_t, dof_,
                                "shrinkage_diag")

    t_peer, c_peer = _best_cpu(peer)
    ref = _best_cpu.last  # conditions c00..c91 are already sorted: same order as rsatoolbox
    t_sub, c_sub = _best_cpu(ours_subset, repeat=2)
    err = np.abs(_best_cpu.last - ref).max() / np.abs(ref).max()
    models = RDMs(np.random.default_rng(1).random((4, N_COND * (N_COND - 1) // 2)), N_COND,
                  conditions=order)
    t_blk, c_blk = _best_cpu(lambda: crossnobis_searchlight(
        sub, models, RADIUS, noise="shrinkage_diag", scheduler="serial", progress=False))
    n_brain = int(np.asarray(mni_mask(2).dataobj).astype(bool).sum())
    per_peer, per_peer_c = t_peer / N_PEER, c_peer / N_PEER
    per_ours, per_ours_c = t_blk / len(spheres), c_blk / len(spheres)
    return "\n".join([
        "## Crossnobis searchlight (92 conditions x 4 runs, radius 6 mm, shrinkage_diag "
        "precision per sphere)",
        "",
        "Command: `.venv/bin/python -m benchmarks.run_all bench_crossnobis`. Peer: rsatoolbox "
        "`prec_from_residuals` + `calc_rdm(method=\"crossnobis\")` per sphere, measured in the "
        "same run on the same spheres.",
        "",
        "| task | wall s (CPU s) | per sphere ms wall (CPU) | speed-up wall (CPU) |",
        "|---|---|---|---|",
        f"| rsatoolbox per sphere, {N_PEER} spheres | {t_peer:.1f} ({c_peer:.1f}) | "
        f"{1e3 * per_peer:.1f} ({1e3 * per_peer_c:.1f}) | 1x |",
        f"| cortexmap, the same {N_PEER} spheres (RDMs only) | {t_sub:.2f} ({c_sub:.2f}) | "
        f"{1e3 * t_sub / N_PEER:.2f} ({1e3 * c_sub / N_PEER:.2f}) | "
        f"**{t_peer / t_sub:.0f}x** ({c_peer / c_sub:.0f}x) |",
        f"| cortexmap `crossnobis_searchlight`, {len(spheres):,} centres ({n_vox:,}-voxel "
        f"block), 4 model RDMs | {t_blk:.1f} ({c_blk:.1f}) | {1e3 * per_ours:.2f} "
        f"({1e3 * per_ours_c:.2f}) | {per_peer / per_ours:.0f}x ({per_peer_c / per_ours_c:.0f}x)"
        " |",
        "",
        f"Max relative difference of the sphere RDMs to rsatoolbox: {err:.1e}. Whole 2 mm mask "
        f"({n_brain:,} voxels) estimated from the block's per-centre cost: "
        f"{per_ours * n_brain / 60:.1f} min wall ({per_ours_c * n_brain / 60:.1f} min CPU); "
        f"rsatoolbox per sphere: {per_peer * n_brain / 3600:.1f} h wall. Target: whole brain "
        "under 10 min on 2 cores, >= 30x faster than rsatoolbox per sphere.",
    ])

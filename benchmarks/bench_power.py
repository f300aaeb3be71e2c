"""Power analysis: the default 4 SNR x 4 subject-count grid, 2 repetitions, 3 mm phantoms.

cortexmap (:func:`cortexmap.brain.power.power_analysis`, cells as dask tasks on a 2-worker
LocalCluster) against the workflow a user has without it, measured in the same run: for one
grid cell, write the phantom with ``make_phantom`` (NIfTI files), load it and run the group
searchlight (``group_searchlight``) for each subject count, scaled to the grid's cells. Planted
geometries: the four default layers of the zoo AlexNet on the bundled images (as
``cortexmap phantom``); mask: the 3 mm occipito-temporal slab.

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_power``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_rsa import _best_cpu

REGIONS = ["V1", "LOC", "fusiform", "parahippocampal"]


def run() -> str:
    from cortexmap.analyses.rdms import layer_rdms
    from cortexmap.brain.group import group_searchlight
    from cortexmap.brain.io import load_dataset
    from cortexmap.brain.phantom import make_phantom, slab_mask
    from cortexmap.brain.power import PowerGrid, power_analysis

    models = layer_rdms("zoo:alexnet_sup_s0", ["conv1", "conv3", "conv5", "fc7"])
    grid = PowerGrid(n_subjects=(4, 6, 8, 12))  # the grid of the recorded run
    import resource

    # the dask worker processes are children of this one: their CPU counts once they exit
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t, c = _best_cpu(lambda: power_analysis(models, REGIONS, grid, scheduler=None,
                                            n_workers=2, progress=False))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    c += (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    res = _best_cpu.last
    with tempfile.TemporaryDirectory() as tmp:
        def peer():
            ds = make_phantom({r: models[i] for i, r in enumerate(REGIONS)}, Path(tmp) / "ph",
                              n_subjects=max(grid.n_subjects), n_runs=2, snr=1.0,
                              mask=slab_mask(3), overwrite=True, progress=False)
            subjects = load_dataset(ds.root)
            for n in grid.n_subjects:
                group_searchlight(subjects[:n], models, radius_mm=6.0, n_perm=2000,
                                  scheduler="serial", progress=False)

        tp, cp = _best_cpu(peer)
    n_cells = len(grid.snr) * grid.repetitions + grid.null_repetitions
    needed = res.needed[["snr", "subjects_searchlight", "subjects_roi",
                         "subjects_searchlight_dice"]]
    return "\n".join([
        "## Power analysis: 4 SNR x 4 subject counts x 2 repetitions (+ 2 null), 3 mm slab",
        "",
        "Command: `.venv/bin/python -m benchmarks.run_all bench_power`. Peer, measured in the "
        "same run: the file-based workflow for one (SNR, repetition) cell (make_phantom to "
        "NIfTI, load_dataset, group_searchlight per subject count), scaled to the grid's "
        f"{n_cells} cells.",
        "",
        "| task | wall s (CPU s: this process + dask workers) | speed-up wall |",
        "|---|---|---|",
        f"| cortexmap `power_analysis`, whole grid, 2 dask workers | {t:.0f} ({c:.0f}) | "
        f"**{tp * n_cells / t:.1f}x** |",
        f"| file-based workflow, one cell | {tp:.0f} ({cp:.0f}) | |",
        f"| file-based workflow scaled to {n_cells} cells | {tp * n_cells:.0f} | 1x |",
        "",
        "Subjects needed for 80 % recovery (NaN: not within the grid):",
        "",
        "| SNR | searchlight (regions detected) | ROI RSA | searchlight Dice >= 0.8 |",
        "|---|---|---|---|",
        *[f"| {r.snr:g} | {r.subjects_searchlight:g} | {r.subjects_roi:g} | "
          f"{r.subjects_searchlight_dice:g} |" for r in needed.itertuples()],
        "",
        "Null phantoms, fraction of model maps with an FWE-significant voxel: "
        + ", ".join(f"{r.n_subjects} subjects {r.fwe_any_fraction:.2f}"
                    for r in res.null.itertuples()) + ". Target: grid under 10 min on 2 cores.",
    ])

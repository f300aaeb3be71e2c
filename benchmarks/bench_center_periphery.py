"""Center-periphery probe against peers measured in the same run on the same inputs.

1. Gradient receptive fields of every position of torchvision ResNet-18 ``layer2`` (112 px
   input, 14 x 14 grid, a branching network where the analytic recursion does not apply):
   cortexmap's separable probing (one probe per row and per column, ``h + w`` positions)
   against the direct method (one input-gradient map per position, ``h * w`` positions), same
   probes, same batches. Both give the same centres (the maximum difference is reported).
2. The crossover statistics of one layer (2 unit-group RDMs x 2 regions x 6 subjects, 40
   stimuli, 1000 permutations + 1000 condition bootstraps): ``crossover_rsa`` (vectorized
   through ``cortexmap.rsa.permutation_test`` / ``bootstrap_conditions``) against the same
   statistics written with rsatoolbox 0.3.2 primitives (``RDMs.subsample_pattern`` /
   ``reorder`` + ``rsatoolbox.rdm.compare``) in a loop. Observed cells agree to 1e-10.

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_center_periphery``.
"""

from __future__ import annotations

import time

import numpy as np


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _receptive_fields(lines: list[str]) -> None:
    import torch
    import torchvision

    from cortexmap.probes.receptive_field import (
        _gradient_profiles,
        _profile_stats,
        receptive_fields,
    )

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    size, layer, n_probes = (112, 112), "layer2", 2
    t_ours, rf = _timed(lambda: receptive_fields(net, layer, size, method="gradient",
                                                 n_probes=n_probes))
    h, w = rf.grid
    positions = [(i, j) for i in range(h) for j in range(w)]

    def direct():
        maps = _gradient_profiles(net, layer, size, positions, n_probes, 0, 64)
        cy = np.array([_profile_stats(m.sum(1))[0] for m in maps]).reshape(h, w)
        cx = np.array([_profile_stats(m.sum(0))[0] for m in maps]).reshape(h, w)
        return np.stack([cy, cx], -1)

    t_ref, centers = _timed(direct)
    err = float(np.abs(centers - rf.centers).max())
    lines += [
        "### Gradient receptive fields, ResNet-18 layer2 (112 px, 14x14 positions, 2 probes)",
        "",
        "| method | positions probed | s | speed-up |",
        "|---|---|---|---|",
        f"| direct (one gradient map per position) | {h * w} | {t_ref:.2f} | 1x |",
        f"| cortexmap separable (row + column probes) | {h + w} | {t_ours:.2f} | "
        f"**{t_ref / t_ours:.1f}x** |",
        "",
        f"Max difference of the RF centres: {err:.2g} px (stride {rf.jump[0]:.0f} px).",
        "",
    ]


def _rsatoolbox_crossover(groups, fov, per, n_perm, n_boot, seed):
    """The crossover statistics written with rsatoolbox primitives (the peer)."""
    import rsatoolbox

    g = groups.to_rsatoolbox()
    data = [fov.to_rsatoolbox(), per.to_rsatoolbox()]
    n = groups.n_conditions

    def cells(model, regions):
        return np.array([[rsatoolbox.rdm.compare(model[k], r, method="spearman").mean()
                          for r in regions] for k in range(2)])

    observed = cells(g, data)
    rng = np.random.default_rng(seed)
    null = np.empty((n_perm, 2, 2))
    for p in range(n_perm):
        regions = []
        for r in data:
            rp = r.copy()
            rp.reorder(rng.permutation(n))
            regions.append(rp)
        null[p] = cells(g, regions)
    boot = np.empty((n_boot, 2, 2))
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        gb = g.subsample_pattern("index", idx)
        boot[b] = cells(gb, [r.subsample_pattern("index", idx) for r in data])
    return observed, null, boot


def _crossover(lines: list[str]) -> None:
    from cortexmap.probes.center_periphery import crossover_rsa
    from cortexmap.rsa import compute_rdms

    rng = np.random.default_rng(0)
    n, n_sub, n_perm, n_boot = 40, 6, 1000, 1000
    a, b = rng.standard_normal((n, 200)), rng.standard_normal((n, 200))
    groups = compute_rdms([a + rng.standard_normal(a.shape), b + rng.standard_normal(b.shape)],
                          names=["central", "background"])

    def subjects(p):
        return compute_rdms(np.stack([p + 2 * rng.standard_normal(p.shape)
                                      for _ in range(n_sub)]))

    fov, per = subjects(a), subjects(b)
    t_ours, st = _timed(lambda: crossover_rsa(groups, {"fusiform": fov, "parahippocampal": per},
                                              n_perm=n_perm, n_boot=n_boot))
    t_ref, (obs, _null, _boot) = _timed(
        lambda: _rsatoolbox_crossover(groups, fov, per, n_perm, n_boot, 0))
    ours = st.table["r"].to_numpy().reshape(2, 2)
    err = float(np.abs(ours - obs).max())
    lines += [
        f"### Crossover statistics, {n} stimuli, {n_sub} subjects, {n_perm} permutations + "
        f"{n_boot} bootstraps",
        "",
        "| implementation | s | speed-up |",
        "|---|---|---|",
        f"| rsatoolbox 0.3.2 compare in a loop | {t_ref:.2f} | 1x |",
        f"| cortexmap `crossover_rsa` | {t_ours:.2f} | **{t_ref / t_ours:.0f}x** |",
        "",
        f"Observed 2x2 cells agree to {err:.1e}; interaction {st.interaction['interaction']:+.3f}"
        f" [{st.interaction['ci_low']:+.3f}, {st.interaction['ci_high']:+.3f}].",
        "",
    ]


def run() -> str:
    import torch

    torch.set_num_threads(1)
    lines = [
        "## Center-periphery (analysis 1)",
        "",
        "Command: `.venv/bin/python -m benchmarks.run_all bench_center_periphery` "
        "(one torch thread).",
        "",
    ]
    _receptive_fields(lines)
    _crossover(lines)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())

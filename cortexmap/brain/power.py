"""Power analysis on the phantom: how many subjects does an RSA study need?

Phantoms (the same simulation as :func:`cortexmap.brain.phantom.make_phantom`, generated in
memory) are drawn over a grid of signal-to-noise ratios, numbers of runs and searchlight radii,
with several independent repetitions, and for every number of subjects the two standard
analyses are run:

* **ROI RSA**: per subject and planted region, the Spearman correlation of the region's RDM with
  every model RDM; a region is *detected* when its planted model has the highest group mean and
  a one-sided sign-flip test over subjects gives p < alpha.
* **Group searchlight**: a searchlight per subject, the sign-flip group test per model with
  max-statistic FWE, winner-take-all maps (:func:`cortexmap.brain.maps.model_maps`); a region is
  *detected* when its planted model wins at least one FWE-significant voxel inside it, and the
  *Dice* of that model's map with the region measures the spatial recovery.

Recovery of a cell is the fraction of planted regions detected (mean over repetitions); the
subjects needed for 80 % recovery at an SNR is the smallest number of subjects whose recovery
reaches 0.8. Null phantoms (SNR 0, same noise) give the family-wise false-positive rate: the
fraction of (repetition, model) maps with any FWE-significant voxel, which should stay near
alpha. Subjects are nested (the first n subjects of a repetition), so curves are smooth in n.
Each (SNR, runs, radius, repetition) is one dask task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cortexmap.brain.io import BrainData, BrainMasker
from cortexmap.brain.maps import model_maps, overlap
from cortexmap.brain.phantom import (
    REGION_ALIASES,
    REGION_COORDS,
    _mixing,
    _sphere_mask,
    embed_geometry,
    slab_mask,
    smooth_noise,
)
from cortexmap.brain.searchlight import (
    _chunk_size,
    _voxel_major,
    chunk_scores,
    make_spheres,
    prepare_models,
    run_chunks,
)
from cortexmap.brain.stats import group_test
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms, sign_flip_test
from cortexmap.utils.dask import close_client
from cortexmap.utils.progress import track


@dataclass(frozen=True)
class PowerGrid:
    """The grid: SNRs (> 0; null phantoms are added), subject counts, runs, radii (mm),
    repetitions per cell."""

    snr: tuple[float, ...] = (0.25, 0.35, 0.5, 1.0)
    n_subjects: tuple[int, ...] = (4, 8, 12, 16)
    n_runs: tuple[int, ...] = (2,)
    radius_mm: tuple[float, ...] = (6.0,)
    repetitions: int = 2
    null_repetitions: int = 2

    def __post_init__(self) -> None:
        if not self.snr or min(self.snr) <= 0:
            raise CortexmapError(f"snr values must be > 0 (null phantoms are added); got "
                                 f"{self.snr}.")
        if not self.n_subjects or min(self.n_subjects) < 2:
            raise CortexmapError(f"n_subjects values must be >= 2; got {self.n_subjects}.")
        if not self.n_runs or min(self.n_runs) < 1:
            raise CortexmapError(f"n_runs values must be >= 1; got {self.n_runs}.")
        if not self.radius_mm or min(self.radius_mm) <= 0:
            raise CortexmapError(f"radius_mm values must be > 0; got {self.radius_mm}.")
        if self.repetitions < 1 or self.null_repetitions < 0:
            raise CortexmapError("repetitions must be >= 1 and null_repetitions >= 0.")


@dataclass
class Layout:
    """Mask, region labels over the mask voxels (0 = none) and each region's planted model."""

    masker: BrainMasker
    labels: np.ndarray
    regions: list[str]
    geometries: list[np.ndarray]
    model_names: list[str]
    fwhm_vox: float
    conditions: list[str]


def make_layout(models: RDMs, regions: list[str], mask: Any = None, region_radius_mm: float = 8.0,
                smoothness_mm: float = 6.0) -> Layout:
    """Bilateral spheres at :data:`REGION_COORDS` carrying model i in region i (as the phantom)."""
    if len(models) != len(regions):
        raise CortexmapError(f"{len(models)} model RDMs for {len(regions)} regions; give one "
                             "region per model (model i is planted in region i).")
    img = slab_mask(3) if mask is None else mask
    masker = img if isinstance(img, BrainMasker) else BrainMasker(img)
    vol = masker.mask
    labels = np.zeros(vol.shape, dtype=np.int16)
    for i, region in enumerate(regions, start=1):
        key = REGION_ALIASES.get(region, region)
        if key not in REGION_COORDS:
            raise CortexmapError(f"No location for region {region!r}; known: "
                                 f"{sorted(REGION_COORDS)}.")
        x, y, z = REGION_COORDS[key]
        sph = _sphere_mask(vol, masker.affine, [(x, y, z), (-x, y, z)], region_radius_mm)
        if (labels[sph] != 0).any():
            raise CortexmapError(f"Region {region!r} overlaps another region; reduce "
                                 "region_radius_mm.")
        labels[sph] = i
    lab = labels.ravel()[masker.indices]
    geoms = []
    for i, region in enumerate(regions, start=1):
        n_vox = int((lab == i).sum())
        if n_vox < 4:
            raise CortexmapError(f"Region {region!r} has {n_vox} voxels in the mask; use a "
                                 "larger mask or region radius.")
        y_, _ = embed_geometry(models[i - 1], "correlation" if models.metric == "unknown"
                               else models.metric)
        geoms.append(y_[:, : max(min(y_.shape[1], n_vox - 1), 1)])
    vox = float(np.sqrt((masker.affine[:3, :3] ** 2).sum(axis=0)).mean())
    conds = models.conditions or [f"stim{i:03d}" for i in range(models.n_conditions)]
    return Layout(masker, lab, list(regions), geoms, list(models.names), smoothness_mm / vox,
                  list(conds))


def simulate(layout: Layout, n_subjects: int, n_runs: int, snr: float, seed: int
             ) -> list[BrainData]:
    """In-memory phantom subjects (single-run patterns), as :func:`make_phantom` writes them."""
    rng = np.random.default_rng(seed)
    n_cond = layout.geometries[0].shape[0]
    conds = np.array(layout.conditions)
    out = []
    for s in range(n_subjects):
        signal = np.zeros((n_cond, layout.masker.n_voxels))
        for i, y in enumerate(layout.geometries, start=1):
            sel = layout.labels == i
            p = y @ _mixing(y.shape[1], int(sel.sum()), rng)
            signal[:, sel] = snr * p / p.std(axis=0).mean()
        runs = [signal + smooth_noise(rng, layout.masker.mask, layout.fwhm_vox, n_cond)
                for _ in range(n_runs)]
        out.append(BrainData(np.concatenate(runs), np.tile(conds, n_runs), layout.masker,
                             runs=np.repeat(np.arange(n_runs), n_cond), subject=f"sub-{s + 1:02d}"))
    return out


def _roi_scores(subjects: list[BrainData], layout: Layout, models: RDMs) -> np.ndarray:
    """(n_subjects, n_regions, n_models) Spearman r of each region's RDM with each model."""
    out = np.empty((len(subjects), len(layout.regions), len(models)))
    for s, sub in enumerate(subjects):
        pats = sub.condition_patterns()
        rdms = compute_rdms([pats[:, layout.labels == i] for i in range(1, len(layout.regions)
                                                                        + 1)])
        out[s] = compare(rdms, models, "spearman")
    return out


def _searchlight_maps(subjects: list[BrainData], layout: Layout, models: RDMs,
                      radius_mm: float) -> np.ndarray:
    """(n_subjects, n_models, n_voxels) searchlight maps (Spearman, correlation distance; NaN
    off centres): the numbers of :func:`cortexmap.brain.searchlight.searchlight` with its
    defaults, with the sphere index and prepared models built once for all subjects. Values
    are rounded to float32, as a map goes through a NIfTI image in the group searchlight."""
    spheres = make_spheres(layout.masker, radius_mm)
    models_z = prepare_models(models.vectors, "spearman")
    size = _chunk_size(spheres.neighbors.shape[1], models.n_conditions, len(models), 256.0)
    out = np.full((len(subjects), len(models), layout.masker.n_voxels), np.nan)
    for k, sub in enumerate(subjects):
        pats = _voxel_major(sub.condition_patterns(layout.conditions), "correlation")
        scores = run_chunks(chunk_scores, pats, spheres.neighbors, models_z,
                            ("correlation", "spearman", "cpu"), size, "serial", None, None,
                            "searchlight chunks", False)
        out[k][:, spheres.centres] = scores.T.astype(np.float32)
    return out


def _sub_masker(masker: BrainMasker, keep: np.ndarray) -> BrainMasker:
    """The masker of ``masker``'s voxels ``keep`` (column indices)."""
    import nibabel as nib

    vol = np.zeros(masker.mask.shape, dtype=np.uint8)
    vol.flat[masker.indices[keep]] = 1
    return BrainMasker(nib.Nifti1Image(vol, masker.affine))


def evaluate_cell(
    layout: Layout, models: RDMs, snr: float, n_runs: int, radius_mm: float, rep: int,
    n_subjects: tuple[int, ...], alpha: float = 0.05, n_perm: int = 2000, seed: int = 0,
    statistic: str = "t",
) -> list[dict[str, Any]]:
    """Simulate max(n_subjects) subjects once; ROI RSA and group searchlight for every n."""
    sim_seed = int(np.random.SeedSequence([seed, rep, n_runs, int(round(snr * 1e6))])
                   .generate_state(1)[0])
    subjects = simulate(layout, max(n_subjects), n_runs, snr, sim_seed)
    roi = _roi_scores(subjects, layout, models)
    maps = _searchlight_maps(subjects, layout, models, radius_mm)
    truth = [layout.labels == i for i in range(1, len(layout.regions) + 1)]
    rows = []
    for n in sorted(n_subjects):
        keep = np.flatnonzero(np.isfinite(maps[:n]).all(axis=(0, 1)))  # as stack_maps aligns
        masker = _sub_masker(layout.masker, keep)
        group = {name: group_test(maps[:n, i][:, keep], masker, n_perm=n_perm, seed=seed,
                                  name=name, statistic=statistic)
                 for i, name in enumerate(models.names)}
        wta = model_maps(group, alpha, "fwe")
        sig_any = [bool(g.significant(alpha, "fwe").any()) for g in group.values()]
        row = {"snr": snr, "n_subjects": n, "n_runs": n_runs, "radius_mm": radius_mm,
               "repetition": rep, "null": snr == 0,
               "fwe_any_fraction": float(np.mean(sig_any))}
        dice, det, roi_det = [], [], []
        for r, region in enumerate(layout.regions):
            ov = overlap(wta[layout.model_names[r]], truth[r][keep])  # model r planted in r
            dice.append(ov["dice"])
            det.append(ov["n_both"] > 0)
            vals = roi[:n, r, :]
            test = sign_flip_test(vals[:, [r]], n_perm=n_perm, seed=seed)
            best = int(np.argmax(vals.mean(0))) == r
            roi_det.append(bool(best and test.pvalues[0] < alpha))
            row[f"dice_{region}"] = ov["dice"]
        row.update({"dice": float(np.mean(dice)), "detected": float(np.mean(det)),
                    "roi_detected": float(np.mean(roi_det))})
        rows.append(row)
    return rows


@dataclass
class PowerResult:
    """cells: one row per (snr, n_subjects, n_runs, radius, repetition), null rows included;
    curve: means over repetitions; needed: subjects needed for 80 % recovery per snr."""

    cells: pd.DataFrame
    curve: pd.DataFrame
    needed: pd.DataFrame
    null: pd.DataFrame
    target: float = 0.8
    findings: list = field(default_factory=list)

    def figure(self):
        """Recovery (fraction detected), Dice and ROI detection against subjects, per SNR."""
        import matplotlib.pyplot as plt

        curve = self.curve
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for (snr, runs, radius), df in curve.groupby(["snr", "n_runs", "radius_mm"]):
            label = f"SNR {snr:g}, {runs} runs, r {radius:g} mm"
            for ax, col in zip(axes, ("detected", "dice", "roi_detected"), strict=True):
                ax.plot(df["n_subjects"], df[col], marker="o", label=label)
        titles = ("Searchlight: regions detected (FWE)", "Searchlight: Dice with the region",
                  "ROI RSA: regions detected")
        for ax, title in zip(axes, titles, strict=True):
            ax.axhline(self.target, color="grey", ls="--", lw=0.8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("subjects")
            ax.set_title(title, fontsize=10)
        axes[0].set_ylabel("fraction / Dice")
        axes[-1].legend(fontsize=7, loc="lower right")
        if not self.null.empty:
            fwer = ", ".join(f"n={r.n_subjects}: {r.fwe_any_fraction:.2f}"
                             for r in self.null.itertuples())
            fig.suptitle(f"Null phantoms, family-wise false-positive rate per map: {fwer}",
                         fontsize=9)
        fig.tight_layout()
        return fig

    def add_to_report(self, report) -> None:
        sec = report.section(
            "Power analysis (phantom)",
            "Phantoms over a grid of SNR, subjects, runs and searchlight radius, several "
            "repetitions each. Searchlight recovery: fraction of planted regions whose planted "
            "model wins an FWE-significant voxel inside them, and the Dice of its map with the "
            f"region. ROI RSA: planted model best and sign-flip p < alpha. The dashed line is "
            f"the {self.target:.0%} target. Null phantoms (SNR 0) give the family-wise "
            "false-positive rate.")
        sec.figure(self.figure(), "Recovery against the number of subjects, per SNR.")
        sec.table(self.needed, f"Subjects needed for {self.target:.0%} recovery (NaN: not "
                  "reached within the grid).")
        sec.table(self.curve, "Means over repetitions per grid cell.")
        if not self.null.empty:
            sec.table(self.null, "Null phantoms: fraction of model maps with any "
                      "FWE-significant voxel (nominal alpha).")


def _needed(curve: pd.DataFrame, target: float) -> pd.DataFrame:
    rows = []
    for (snr, runs, radius), df in curve[~curve["null"]].groupby(["snr", "n_runs",
                                                                   "radius_mm"]):
        df = df.sort_values("n_subjects")
        row = {"snr": snr, "n_runs": runs, "radius_mm": radius}
        for col, name in (("detected", "searchlight"), ("roi_detected", "roi"),
                          ("dice", "searchlight_dice")):
            ok = df.loc[df[col] >= target, "n_subjects"]
            row[f"subjects_{name}"] = float(ok.min()) if len(ok) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _client(scheduler: str | None, n_workers: int | None):
    """:func:`cortexmap.utils.dask.get_client` without dask's ``MALLOC_TRIM_THRESHOLD_`` in
    the workers' environment: with it glibc returns every freed numpy temporary to the OS and
    the next one page-faults again (on the default grid: 100 s of system CPU instead of 9)."""
    import dask
    import dask.distributed  # noqa: F401  (registers the distributed config)

    from cortexmap.utils.dask import get_client

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return get_client(scheduler, n_workers=n_workers)


def power_layout(models: RDMs, regions: list[str], grid: PowerGrid, mask: Any = None,
                 region_radius_mm: float = 8.0, smoothness_mm: float = 6.0) -> Layout:
    """:func:`make_layout`, and every searchlight radius of ``grid`` checked on its mask: all
    that can be wrong with a power analysis's settings shows here, in a second, before any
    output or simulation exists."""
    layout = make_layout(models, regions, mask, region_radius_mm, smoothness_mm)
    for radius in grid.radius_mm:
        if not len(make_spheres(layout.masker, radius).centres):
            raise CortexmapError(
                f"No {radius} mm searchlight sphere fits in this mask (each must lie at least "
                "half inside it); use a smaller radius_mm or a larger mask.")
    return layout


def power_analysis(
    models: RDMs,
    regions: list[str],
    grid: PowerGrid = PowerGrid(),
    mask: Any = None,
    region_radius_mm: float = 8.0,
    smoothness_mm: float = 6.0,
    alpha: float = 0.05,
    n_perm: int = 2000,
    target: float = 0.8,
    seed: int = 0,
    scheduler: str | None = "serial",
    client: Any = None,
    n_workers: int | None = None,
    progress: bool = True,
    statistic: str = "t",
    layout: Layout | None = None,
) -> PowerResult:
    """Recovery and false positives of ROI RSA and the group searchlight over ``grid``.

    models: planted RDMs, model i in region i (names of :data:`REGION_COORDS`); mask: default
    the 3 mm occipito-temporal slab (:func:`slab_mask`). scheduler: "serial" (this process),
    None (a dask LocalCluster), an address or "slurm"/"pbs"/"sge"; each (SNR, runs, radius,
    repetition) is one task. statistic: the group test's max-statistic (see
    :func:`cortexmap.brain.stats.group_test`; "mean" does not keep the FWE rate on searchlight
    maps). layout: the result of :func:`power_layout` for these settings, when the caller
    checked them already (built here otherwise).
    """
    if not 0 < target <= 1:
        raise CortexmapError(f"target must lie in (0, 1]; got {target}.")
    if layout is None:
        layout = power_layout(models, regions, grid, mask, region_radius_mm, smoothness_mm)
    jobs = [(snr, runs, radius, rep) for snr in grid.snr for runs in grid.n_runs
            for radius in grid.radius_mm for rep in range(grid.repetitions)]
    jobs += [(0.0, runs, radius, rep) for runs in grid.n_runs for radius in grid.radius_mm
             for rep in range(grid.null_repetitions)]
    kw = {"n_subjects": tuple(grid.n_subjects), "alpha": alpha, "n_perm": n_perm, "seed": seed,
          "statistic": statistic}
    rows: list[dict[str, Any]] = []
    own = None
    if client is None and scheduler != "serial" and len(jobs) > 1:
        client = own = _client(scheduler, n_workers)
    try:
        if client is None:
            for job in track(jobs, "power grid cells", enabled=progress):
                rows += evaluate_cell(layout, models, *job, **kw)
        else:
            from dask.distributed import as_completed

            lay, mod = client.scatter(layout, broadcast=True), client.scatter(models,
                                                                               broadcast=True)
            futures = [client.submit(evaluate_cell, lay, mod, *job, pure=False, **kw)
                       for job in jobs]
            for fut in track(as_completed(futures), "power grid cells", total=len(futures),
                             enabled=progress):
                rows += fut.result()
                fut.release()
    finally:
        close_client(own)
    cells = pd.DataFrame(rows).sort_values(["null", "snr", "n_runs", "radius_mm", "n_subjects",
                                            "repetition"], ignore_index=True)
    keys = ["null", "snr", "n_runs", "radius_mm", "n_subjects"]
    value_cols = [c for c in cells.columns if c not in keys + ["repetition"]]
    curve = cells.groupby(keys, as_index=False)[value_cols].mean()
    null = curve.loc[curve["null"], ["n_runs", "radius_mm", "n_subjects", "fwe_any_fraction",
                                     "roi_detected"]].rename(
        columns={"roi_detected": "roi_false_detection"}).reset_index(drop=True)
    null.insert(4, "n_maps", grid.null_repetitions * len(models))
    result = PowerResult(cells, curve[~curve["null"]].drop(columns="null").reset_index(drop=True),
                         _needed(curve, target), null, target)
    result.findings = _findings(result, alpha)
    return result


def _findings(res: PowerResult, alpha: float) -> list:
    from cortexmap.report import Finding

    out = []
    if not res.null.empty:
        from scipy.stats import binom

        # pooled over the subject counts that can reach alpha at all (min p <= alpha)
        null = res.cells[res.cells["null"] & (res.cells["n_subjects"] >= np.log2(1 / alpha))]
        n_models = len(res.cells.filter(like="dice_").columns)  # one model per region
        n_maps = len(null) * n_models
        hits = int(round(float(null["fwe_any_fraction"].sum()) * n_models))
        p_tail = float(binom.sf(hits - 1, n_maps, alpha)) if n_maps else 1.0
        lo, hi = _clopper_pearson(hits, n_maps)
        out.append(Finding(
            "On null phantoms the group searchlight keeps the family-wise error rate",
            p_tail >= 0.01,
            f"{hits} of {n_maps} null model maps with an FWE-significant voxel: "
            f"{hits / max(n_maps, 1):.3f} (95 % CI {lo:.3f}-{hi:.3f}; nominal {alpha}); "
            f"binomial P(>= {hits} | {alpha}) = {p_tail:.3g}",
            analysis="power", evidence="method-check",
            criterion=f"the count of null maps with any FWE-significant voxel is not "
                      f"significantly above alpha = {alpha} (one-sided binomial p >= 0.01), "
                      "over the subject counts that can reach alpha"))
    top = res.curve.sort_values("snr").groupby("snr").tail(1)
    best = top.loc[top["snr"].idxmax()]
    out.append(Finding(
        "At the highest SNR and most subjects of the grid the searchlight recovers the planted "
        "regions",
        bool(best["detected"] >= res.target),
        f"SNR {best['snr']:g}, {int(best['n_subjects'])} subjects: {best['detected']:.2f} of "
        f"regions detected, mean Dice {best['dice']:.2f}; ROI RSA {best['roi_detected']:.2f}",
        analysis="power", evidence="method-check",
        criterion=f"fraction of planted regions detected >= {res.target:.0%}",
        control="null phantoms (SNR 0) in the same run"))
    return out


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of k successes in n trials."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    return (float(beta.ppf(a, k, n - k + 1)) if k else 0.0,
            float(beta.ppf(1 - a, k + 1, n - k)) if k < n else 1.0)


def write_power(res: PowerResult, outdir: str | os.PathLike, config: dict[str, Any],
                overwrite: bool = False):
    """Tables (cells, curve, needed, null), figure, report and provenance into ``outdir``."""
    from cortexmap.report import Report
    from cortexmap.utils.io import prepare_output_dir, write_bytes, write_table
    from cortexmap.utils.provenance import write_provenance

    out = prepare_output_dir(outdir, overwrite)
    for name in ("cells", "curve", "needed", "null"):
        write_table(getattr(res, name), out / name)
    import io

    buf = io.BytesIO()
    res.figure().savefig(buf, format="png", dpi=110)
    write_bytes(out / "power.png", buf.getvalue())
    write_provenance(out, config=config, seed=config.get("seed"))
    report = Report("Power analysis", "Phantom recovery over subjects, SNR, runs and radius.")
    res.add_to_report(report)
    report.findings(res.findings)
    report.write(out / "report.html")
    return out


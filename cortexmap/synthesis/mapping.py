"""Layer -> brain mapping with natural, synthesized and residual RDMs on the phantom brain.

The phantom brain plants each layer's geometry in its own region (layer ``k`` -> region ``k``
of :data:`cortexmap.brain.phantom.REGION_COORDS`): the simulated brain "computes like" the
network. For each image set the phantom's regions carry the layer RDMs *of that image set*:

* ``natural``: phantom responses to the natural images; model RDMs = natural layer RDMs;
* ``synthesized``: phantom responses to the synthesized images; model RDMs = their layer RDMs;
* ``residual``: the natural phantom again, mapped with the residual RDMs (each layer with the
  other layers regressed out, :func:`cortexmap.rsa.residual.residual_rdms`, on ranks): the
  semi-partial correlation, through the ordinary searchlight;
* ``partial``: the natural phantom, mapped by partial correlation: the other layers are
  regressed out of both the layer RDM and each searchlight RDM (:func:`partial_searchlight`).

Each subject is searchlight-mapped (:func:`cortexmap.brain.searchlight.searchlight`, Spearman)
against every layer RDM; the subject maps are averaged, and a layer's map is the set of voxels
whose mean r exceeds a threshold: by default a family-wise (Bonferroni over voxels,
``alpha = 0.05``) threshold on the null distribution of the same statistic for the layer RDM
with permuted condition labels (``n_perm`` permutations searchlight-mapped alongside the real
RDMs, :func:`fwe_threshold`), so every image set and every layer is judged against its own
null (residual RDMs correlate more weakly with anything than raw ones; one fixed r cut would
be unfair to them). Scores per image set:

* recovery: Dice (and Jaccard) of each layer's map with the region where that layer was planted;
* overlap: Dice (and Jaccard) between the maps of every pair of layers, and the fraction of
  mapped voxels claimed by more than one layer;
* assignment: the region holding most of each layer's map, and whether it is the planted one.

When layer RDMs correlate (natural images), a region planted with one layer also matches the
others, so layer maps spread and overlap; decorrelated RDMs (synthesized, residual) keep them
apart.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cortexmap.brain.io import BrainMasker, write_nifti
from cortexmap.brain.maps import overlap
from cortexmap.brain.phantom import REGION_COORDS, make_phantom
from cortexmap.brain.searchlight import searchlight, searchlight_rdms
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding
from cortexmap.rsa import RDMs, rank_rows
from cortexmap.rsa.residual import check_design, residual_rdms
from cortexmap.synthesis.figures import mapping_bars
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, safe_filenames

SETS = ("natural", "synthesized", "residual", "partial", "noise")
# Phantom data behind each set's maps: the residual methods reuse the natural-image phantom;
# "noise" is the negative control: the natural RDMs mapped on a phantom with nothing planted.
_PHANTOM_OF = {"natural": "natural", "synthesized": "synthesized", "residual": "natural",
               "partial": "natural", "noise": "noise"}
NOISE_DICE = 0.1  # a negative-control phantom must not "recover" more than this


def permuted_models(rdms: RDMs, n_perm: int, seed: int) -> RDMs:
    """Each RDM followed by ``n_perm`` condition-label permutations of it (the null models).

    Names are ``"<layer>|perm<k>"``; the permutations are shared across layers.
    """
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(rdms.n_conditions) for _ in range(n_perm)]
    parts = []
    for name in rdms.names:
        one = rdms.subset([name])
        parts.append(one)
        for k, perm in enumerate(perms):
            p = one.subset_conditions(perm)
            parts.append(RDMs(p.vectors, p.n_conditions, [f"{name}|perm{k}"], p.metric))
    return RDMs.concat(parts)


def fwe_threshold(null: np.ndarray, alpha: float, n_tests: int) -> np.ndarray:
    """Per-row threshold controlling the family-wise error over ``n_tests`` voxels.

    null: (n_layers, n_null) searchlight r of permuted layer RDMs (NaN ignored). The permutation
    null of a rank correlation is close to normal, so the threshold is its mean +
    z(1 - alpha / n_tests) standard deviations (Bonferroni on the fitted null): estimating so
    extreme a quantile directly would need millions of permutation maps.
    """
    from scipy.stats import norm

    z = norm.isf(alpha / max(n_tests, 1))
    return np.nanmean(null, axis=1) + z * np.nanstd(null, axis=1)


def dice_jaccard(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Dice and Jaccard of two boolean maps (:func:`cortexmap.brain.overlap`), 0 when both are
    empty: two layers with no mapped voxels share none."""
    o = overlap(a, b)
    return float(np.nan_to_num(o["dice"])), float(np.nan_to_num(o["jaccard"]))


def planted_layers(layers: list[str], n_regions: int) -> list[str]:
    """Layers planted in the phantom: all of them, or an evenly spaced subset if more layers
    than regions (the first and last layer are always included)."""
    if len(layers) <= n_regions:
        return list(layers)
    idx = np.unique(np.round(np.linspace(0, len(layers) - 1, n_regions)).astype(int))
    return [layers[i] for i in idx]


@dataclass
class MappingResult:
    """Group-mean searchlight maps per image set and the recovery / overlap tables."""

    tables: dict[str, pd.DataFrame]
    maps: dict[str, np.ndarray]  # set -> (n_layers, n_voxels) group-mean r
    masks: dict[str, np.ndarray]  # set -> (n_layers, n_voxels) bool layer maps
    layers: list[str]
    planted: dict[str, str]  # layer -> region
    threshold: str  # how maps were thresholded, in words
    masker: Any
    outdir: Path
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self, which: str) -> pd.Series:
        t = self.tables["mapping_summary"]
        return t.loc[t["set"] == which].iloc[0]

    def findings(self) -> list[Finding]:
        s = {k: self.summary(k) for k in SETS}
        ov = {k: float(s[k]["mean_overlap_dice"]) for k in SETS}
        rec = {k: float(s[k]["mean_recovery_dice"]) for k in SETS}

        def nums(keys):
            return "; ".join(f"{k}: overlap Dice {ov[k]:.3f}, recovery Dice {rec[k]:.3f}"
                             for k in keys)

        def approaches(k: str) -> bool:
            # closer to the synthesized result than the natural one is, on both scores
            return all(abs(m[k] - m["synthesized"]) < abs(m["natural"] - m["synthesized"])
                       for m in (ov, rec))

        noise = self.summary("noise")
        noise_ok = rec["noise"] < NOISE_DICE
        control = (f"noise phantom (natural RDMs, nothing planted): {int(noise['mapped_voxels'])}"
                   f" mapped voxels, recovery Dice {rec['noise']:.3f}")
        out = [Finding(
            claim="On the phantom brain (each layer's own RDM planted in its own region), layer "
                  "maps from synthesized images overlap less than layer maps from natural "
                  "images.",
            reproduced=bool(ov["synthesized"] < ov["natural"] and noise_ok),
            numbers=nums(("natural", "synthesized")) + f" ({self.threshold}).",
            analysis="synthesis",
            evidence="method-check",
            criterion="Mean overlap Dice of the layer maps is lower for synthesized than for "
                      f"natural images, and the noise phantom's recovery Dice stays below "
                      f"{NOISE_DICE:g}.",
            control=control,
        )]
        for k, how in (("residual", "regression (residual RDMs, semi-partial)"),
                       ("partial", "partial correlation")):
            out.append(Finding(
                claim=f"The residual method by {how} on natural-image data approaches the "
                      "synthesized result (overlap and recovery both closer to synthesized "
                      "than natural images are).",
                reproduced=approaches(k) and noise_ok,
                numbers=nums(("natural", "synthesized", k)) + ".",
                analysis="synthesis",
                evidence="method-check",
                criterion="Both overlap and recovery Dice are closer to the synthesized-image "
                          "values than the natural-image values are, and the noise phantom's "
                          f"recovery Dice stays below {NOISE_DICE:g}.",
                control=control,
            ))
        return out

    def overlap_img(self, which: str):
        """NIfTI image: number of layer maps covering each voxel for one image set."""
        return self.masker.inverse_transform(self.masks[which].sum(0).astype(np.float32))

    def add_to_report(self, section) -> None:
        sub = section.subsection(
            "Mapping layers on the phantom brain: natural vs synthesized vs residual methods",
            "Each layer's geometry was planted in its own region of a simulated brain "
            f"({', '.join(f'{k}->{v}' for k, v in self.planted.items())}); each subject was "
            "searchlight-mapped with every layer RDM (natural, synthesized, residual RDMs by "
            "regression, and partial correlation on the natural data), subject maps averaged, "
            "and a layer's map "
            f"is where r passes the {self.threshold}. Recovery = Dice of a layer's map with its "
            "planted region; overlap = Dice between the maps of two layers.",
        )
        sub.figure(mapping_bars(self.tables["mapping_summary"]),
                   "Recovery (Dice with the planted region) and overlap between layer maps, "
                   "per image set.")
        sub.table(self.tables["mapping_summary"], "Mapping summary per image set.")
        sub.table(self.tables["mapping_assignment"],
                  "Layer -> region assignment (region holding most of each layer's map).")
        for which in SETS:
            if not self.masks[which].any():
                sub.text(f"**{which}**: no voxel passed the threshold for any layer.")
                continue
            sub.brain(self.overlap_img(which),
                      f"{which}: number of layer maps covering each voxel (overlap).",
                      threshold=0.5, title=which)


def partial_searchlight(
    data, rdms: RDMs, radius_mm: float, n_perm: int = 0, seed: int = 0, mask: Any = None
) -> np.ndarray:
    """Searchlight partial correlation of each layer RDM with each sphere RDM.

    For layer k, the ranks of the other layers' RDMs (plus an intercept) are regressed out of
    both the ranked layer RDM and every ranked searchlight RDM, which are then correlated
    (a partial Spearman correlation). With ``n_perm`` > 0 each layer is followed by its
    condition-permuted copies (residualized on the same, unpermuted other layers), matching the
    layout of :func:`permuted_models`. Memory: the searchlight RDMs (n_centres x n_pairs).

    data: a :class:`cortexmap.brain.BrainData`, or a (n_conditions, n_voxels) array with
    ``mask``. Returns (n_layers * (1 + n_perm), n_voxels), NaN where no centre.
    """
    check_design(rdms.vectors, list(rdms.names))
    sl, spheres = searchlight_rdms(data, radius_mm=radius_mm, mask=mask)
    if hasattr(data, "masker"):
        n_vox = data.masker.n_voxels
    else:
        n_vox = (mask if isinstance(mask, BrainMasker) else BrainMasker(mask)).n_voxels
    d = rank_rows(sl.vectors)
    models = permuted_models(rdms, n_perm, seed) if n_perm else rdms
    m = rank_rows(models.vectors).reshape(len(rdms), n_perm + 1, -1)
    ranked = rank_rows(rdms.vectors)
    out = np.full((len(models), n_vox), np.nan)
    for k in range(len(rdms)):
        x = np.column_stack([np.ones(ranked.shape[1]), np.delete(ranked, k, axis=0).T])
        # residual-forming matrix I - X X^+ (n_pairs x n_pairs; symmetric)
        h = np.eye(x.shape[0]) - x @ np.linalg.pinv(x)
        dr = d @ h
        dr /= np.linalg.norm(dr, axis=1, keepdims=True) + 1e-300
        mr = m[k] @ h
        mr /= np.linalg.norm(mr, axis=1, keepdims=True) + 1e-300
        out[k * (n_perm + 1):(k + 1) * (n_perm + 1), spheres.centres] = (dr @ mr.T).T
    undefined = ~np.isfinite(sl.vectors).all(axis=1)
    out[:, spheres.centres[undefined]] = np.nan
    return out


def _check_mappable(rdms: RDMs, which: str) -> None:
    spread = rdms.vectors.std(axis=1)
    flat = [n for n, s in zip(rdms.names, spread, strict=True) if not s > 1e-12]
    if flat:
        raise CortexmapError(
            f"The {which} RDM of layer(s) {flat} is constant (every pair equally dissimilar), "
            "so it cannot be mapped; the layer's activations do not vary over these images "
            "(e.g. an untrained deep layer). Drop that layer."
        )


def compare_mappings(
    rdms: dict[str, RDMs],
    outdir: str | os.PathLike,
    snr: float = 2.0,
    n_subjects: int = 3,
    n_runs: int = 2,
    resolution_mm: int = 3,
    radius_mm: float = 9.0,
    threshold: float | None = None,
    alpha: float = 0.05,
    n_perm: int = 10,
    seed: int = 0,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> MappingResult:
    """Map layers with natural, synthesized and residual RDMs on phantoms; score the maps.

    rdms: {"natural": RDMs, "synthesized": RDMs, "residual": RDMs} with the same layer names
    (residual defaults to ``residual_rdms(rdms["natural"], rank=True)`` when missing).
    threshold: a fixed r for every map, or None -> per-layer family-wise threshold at
    ``alpha`` from the null of ``n_perm`` permuted RDMs (:func:`fwe_threshold`).
    scheduler: None ->
    the searchlight runs in this process; an address / "local" / "slurm" -> a dask client
    (:func:`cortexmap.utils.dask.get_client`) shared by every searchlight.
    """
    rdms = dict(rdms)
    if "residual" not in rdms:
        rdms["residual"] = residual_rdms(rdms["natural"], rank=True)
    rdms["partial"] = rdms["natural"]  # partial correlation uses the natural RDMs themselves
    rdms["noise"] = rdms["natural"]
    layers = list(rdms["natural"].names)
    for which in SETS:
        if list(rdms[which].names) != layers:
            raise CortexmapError(
                f"The {which} RDMs name layers {rdms[which].names} but the natural ones "
                f"{layers}; use the same layers in the same order."
            )
        _check_mappable(rdms[which], which)
    regions = list(REGION_COORDS)
    plant = planted_layers(layers, len(regions))
    planted = dict(zip(plant, regions, strict=False))
    out = prepare_output_dir(outdir, overwrite)

    client = None
    if scheduler is not None:
        client = get_client(scheduler)
    phantoms = {}
    maps, masks, rows_rec, rows_ov, rows_sum, rows_asg = {}, {}, [], [], [], []
    try:
        for which in SETS:
            source = _PHANTOM_OF[which]
            if source not in phantoms:
                geoms = {region: rdms[source].subset([layer]) for layer, region in
                         planted.items()}
                phantoms[source] = make_phantom(
                    geoms, out / f"phantom_{source}", n_subjects=n_subjects, n_runs=n_runs,
                    snr=0.0 if source == "noise" else snr, resolution_mm=resolution_mm,
                    seed=seed, overwrite=True,
                    progress=progress,
                )
            ds = phantoms[source]
            subjects = ds.load()
            perms = 0 if threshold is not None else n_perm
            if which == "partial":
                subj_maps = [partial_searchlight(sub, rdms["natural"], radius_mm, perms, seed)
                             for sub in subjects]
            else:
                models = permuted_models(rdms[which], perms, seed) if perms else rdms[which]
                subj_maps = [
                    searchlight(sub, models, radius_mm=radius_mm, method="spearman",
                                scheduler="serial" if client is None else None, client=client,
                                progress=progress).maps
                    for sub in subjects
                ]
            masker = subjects[0].masker
            with warnings.catch_warnings():  # voxels without a centre stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                allmaps = np.nanmean(np.stack(subj_maps), axis=0)
            if threshold is None:
                allmaps = allmaps.reshape(len(layers), n_perm + 1, -1)
                group = allmaps[:, 0]
                null = allmaps[:, 1:].reshape(len(layers), -1)
                n_vox = int(np.isfinite(group).any(axis=0).sum())
                thr = fwe_threshold(null, alpha, n_vox)
            else:
                group = allmaps
                thr = np.full(len(layers), float(threshold))
            on = np.nan_to_num(group, nan=-np.inf) > thr[:, None]
            maps[which], masks[which] = group, on
            sub_out = out / which
            sub_out.mkdir(parents=True, exist_ok=True)
            files = safe_filenames(list(layers), "layer")
            for k, layer in enumerate(layers):
                write_nifti(sub_out / f"r_{files[layer]}.nii.gz",
                            masker.inverse_transform(group[k].astype(np.float32), fill=np.nan))
            atlas = ds.atlas()
            truth = {layer: atlas.region_mask(region, masker) for layer, region in
                     planted.items()}
            labels = atlas.data.ravel()[masker.indices]
            for k, layer in enumerate(layers):
                row = {"set": which, "layer": layer, "region": planted.get(layer, ""),
                       "threshold": float(thr[k]), "map_voxels": int(on[k].sum()),
                       "peak_r": float(np.nanmax(group[k]))}
                if layer in truth:
                    row["dice"], row["jaccard"] = dice_jaccard(on[k], truth[layer])
                    row["mean_r_in_region"] = float(np.nanmean(group[k][truth[layer]]))
                rows_rec.append(row)
                counts = {atlas.names[lab]: int((labels[on[k]] == lab).sum())
                          for lab in atlas.names}
                best = max(counts, key=counts.get) if counts and max(counts.values()) else ""
                rows_asg.append({"set": which, "layer": layer,
                                 "planted_region": planted.get(layer, ""),
                                 "assigned_region": best,
                                 "correct": bool(best and best == planted.get(layer)),
                                 "voxels_in_assigned": counts.get(best, 0),
                                 "voxels_outside_regions": int((labels[on[k]] == 0).sum())})
            pair_d = []
            for a in range(len(layers)):
                for b in range(a + 1, len(layers)):
                    d, j = dice_jaccard(on[a], on[b])
                    pair_d.append(d)
                    rows_ov.append({"set": which, "layer_a": layers[a], "layer_b": layers[b],
                                    "dice": d, "jaccard": j})
            cover = on.sum(0)
            rec = [r["dice"] for r in rows_rec if r["set"] == which and "dice" in r]
            rows_sum.append({
                "set": which, "mean_threshold": float(thr.mean()),
                "mean_recovery_dice": float(np.mean(rec)),
                "mean_overlap_dice": float(np.mean(pair_d)),
                "shared_voxel_fraction": float((cover > 1).sum() / max((cover > 0).sum(), 1)),
                "mapped_voxels": int((cover > 0).sum()),
                "correct_assignments": int(sum(r["correct"] for r in rows_asg
                                               if r["set"] == which)),
                "n_layers": len(layers),
            })
    finally:
        close_client(client)

    return MappingResult(
        tables={"mapping_recovery": pd.DataFrame(rows_rec),
                "mapping_overlap": pd.DataFrame(rows_ov),
                "mapping_summary": pd.DataFrame(rows_sum),
                "mapping_assignment": pd.DataFrame(rows_asg)},
        maps=maps, masks=masks, layers=layers, planted=planted,
        threshold=f"r > {threshold:g}" if threshold is not None else
        f"family-wise alpha {alpha:g} threshold from {n_perm} condition permutations",
        masker=masker, outdir=out,
        extras={"snr": snr, "n_subjects": n_subjects, "radius_mm": radius_mm},
    )

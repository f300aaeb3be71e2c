"""Real-data variants of the universal-dimensions and residual-method analyses.

Both run on the layer activations and RDMs the benchmark already computed, against the group
RDMs of real regions (rank-averaged over subjects): human IT of the 92-image set, and EVC and IT
of the Algonauts-78 set. Only RDMs are public for these data, so a dimension's *brain similarity*
is the Spearman correlation of its own RDM (|s_i - s_j| over image pairs) with the region's RDM,
not a ridge prediction from voxels. CIs are estimate ± 1.96 SE, the SE from bootstrapping
stimuli (pairs of an image with its own copy left out); universality, a property of the
networks, is held fixed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cortexmap.analyses.networks import NetworkRDMs
from cortexmap.rsa import RDMs, compare, pool_rdms
from cortexmap.rsa.rdm import triu_indices
from cortexmap.rsa.residual import partial_correlation, residual_vectors
from cortexmap.universal.dimensions import (
    principal_dimensions,
    ranked_dimensions,
    universality,
)
from cortexmap.universal.reduction import reduction_curve

#: data set -> regions with subject RDMs used by the variants
REGIONS = {"kriegeskorte92": ("hIT",), "algonauts78": ("EVC", "IT")}


def group_rdm(data, region: str) -> RDMs:
    """Rank-averaged (Spearman-pooled) RDM of a region's subjects."""
    subjects = data.subject_rdms(region)
    return RDMs(pool_rdms(subjects, "spearman")[None], subjects.n_conditions, [region],
                "rank", subjects.conditions)


def _resamples(n: int, n_boot: int, seed: int):
    """Stimulus bootstrap samples as (i, j) condition pairs, duplicates' pairs left out."""
    rng = np.random.default_rng(seed)
    i, j = triu_indices(n)
    for _ in range(n_boot):
        stim = rng.integers(0, n, n)
        if np.unique(stim).size < 3:
            continue
        keep = stim[i] != stim[j]
        yield stim[i][keep], stim[j][keep]


def _ci(estimate: float, samples, level: float = 0.95) -> tuple[float, float]:
    """estimate ± z · bootstrap SE. Percentile intervals are biased here: a resample drops the
    pairs of duplicated stimuli, which shrinks correlations, and can leave the estimate outside
    its own interval."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return np.nan, np.nan
    half = stats.norm.ppf(0.5 + level / 2) * s.std(ddof=1)
    return float(estimate - half), float(estimate + half)


# ----------------------------------------------------------------------------------------------
# Universal dimensions
# ----------------------------------------------------------------------------------------------
def universal_variant(cfg, data: dict, nets: dict[str, NetworkRDMs]) -> dict[str, pd.DataFrame]:
    """Universality vs real brain similarity per region, and the k-most/least curves.

    Uses the trained networks (ImageNet and zoo; untrained twins are not part of the set whose
    shared dimensions define universality), each at its deepest chosen layer below the output.
    """
    trained = [n for n, net in nets.items() if net.family != "untrained"]
    if len(trained) < 2:
        return {"universal_relation": pd.DataFrame([{
            "dataset": "", "region": "", "note": "fewer than 2 trained networks: universality "
                                                 "needs at least 2"}])}
    dims_rows, rel_rows, red_rows = [], [], []
    for dataset, regions in REGIONS.items():
        if dataset not in data:
            continue
        acts = {n: next(iter(nets[n].activations[dataset].values())) for n in trained}
        n_img = len(next(iter(acts.values())))
        n_dims = min(cfg.n_dims, n_img // 2, *(a.shape[1] - 1 for a in acts.values()))
        dims = {n: principal_dimensions(a, n_dims, n, cfg.seed) for n, a in acts.items()}
        table = universality(acts, dims, 5, seed=cfg.seed, progress=False)
        scores = np.concatenate([dims[n].scores for n in dims], axis=1)  # (n_img, total dims)
        i, j = triu_indices(n_img)
        dim_rdms = np.abs(scores[i] - scores[j]).T  # one 1-D RDM per dimension
        for region in regions:
            group = group_rdm(data[dataset], region)
            sim = compare(dim_rdms, group, "spearman")[:, 0]
            rho = stats.spearmanr(table.universality, sim).statistic
            gm = group.matrices()[0]
            boot = [stats.spearmanr(table.universality, compare(
                np.abs(scores[ii] - scores[jj]).T, gm[ii, jj], "spearman")[:, 0]).statistic
                for ii, jj in _resamples(n_img, cfg.n_boot_variants, cfg.seed)]
            lo, hi = _ci(rho, boot)
            rel_rows.append({"dataset": dataset, "region": region, "n_networks": len(trained),
                             "n_dims": len(sim), "spearman_rho": rho, "ci_low": lo,
                             "ci_high": hi, "n_boot": len(boot)})
            dims_rows.append(table.assign(dataset=dataset, region=region, brain_similarity=sim))
            ks = [k for k in cfg.ks if k <= n_dims]
            for n in trained:
                red_rows.append(reduction_curve(
                    n, dims[n].scores, ranked_dimensions(table, n), acts[n], group, ks,
                    "euclidean", "spearman").assign(dataset=dataset, region=region))
    return {"universal_dims": pd.concat(dims_rows, ignore_index=True),
            "universal_relation": pd.DataFrame(rel_rows),
            "universal_reduction": pd.concat(red_rows, ignore_index=True)}


# ----------------------------------------------------------------------------------------------
# Residual method
# ----------------------------------------------------------------------------------------------
def _profiles(layers: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """(n_layers, n_regions) similarity of plain, residual and partial layer RDMs (Spearman)."""
    resid = residual_vectors(layers, rank=True)
    return {"plain": compare(layers, brain, "spearman"),
            "residual": compare(resid, brain, "spearman"),
            "partial": partial_correlation(layers, brain, "spearman")}


def _preferred_depth(profile: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Depth centre of mass of the positive similarities, per region (NaN if none > 0)."""
    w = np.maximum(profile, 0.0)
    total = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (depth[:, None] * w).sum(0) / total, np.nan)


def residual_variant(cfg, data: dict, nets: dict[str, NetworkRDMs]) -> dict[str, pd.DataFrame]:
    """Plain vs residual vs partial layer RDMs against real regions, per network.

    Tables: ``residual_scores`` (every layer x region x method), ``residual_assignment`` (best
    layer per region and method with its bootstrap stability) and ``residual_specificity``
    (Algonauts: preferred depth of IT minus that of EVC, per method, and residual minus plain,
    with stimulus-bootstrap CIs; > 0 means later layers go to IT, earlier ones to EVC).
    """
    score_rows, assign_rows, spec_rows = [], [], []
    for dataset, regions in REGIONS.items():
        if dataset not in data:
            continue
        groups = RDMs.concat([group_rdm(data[dataset], r) for r in regions])
        gm = groups.matrices()
        for name, net in nets.items():
            if len(net.layers) < 2:
                continue
            rdms = net.rdms[dataset]
            depth = np.array([net.depth()[layer] for layer in net.layers])
            observed = _profiles(rdms.vectors, groups.vectors)
            mats = rdms.matrices()
            boots = [_profiles(mats[:, ii, jj], gm[:, ii, jj])
                     for ii, jj in _resamples(rdms.n_conditions, cfg.n_boot_variants, cfg.seed)]
            for method, prof in observed.items():
                for r, region in enumerate(regions):
                    best = int(np.argmax(prof[:, r]))
                    stable = np.mean([np.argmax(b[method][:, r]) == best for b in boots])
                    assign_rows.append({
                        "network": name, "family": net.family, "dataset": dataset,
                        "region": region, "method": method, "best_layer": net.layers[best],
                        "best_depth": depth[best], "similarity": prof[best, r],
                        "stability": stable, "n_boot": len(boots)})
                    score_rows += [{"network": name, "family": net.family, "dataset": dataset,
                                    "region": region, "method": method, "layer": layer,
                                    "depth": depth[k], "similarity": prof[k, r]}
                                   for k, layer in enumerate(net.layers)]
            if set(regions) != {"EVC", "IT"}:
                continue
            ev, it = regions.index("EVC"), regions.index("IT")

            def specificity(prof, ev=ev, it=it, depth=depth):
                d = _preferred_depth(prof, depth)
                return d[it] - d[ev]

            plain = specificity(observed["plain"])
            boot_plain = np.array([specificity(b["plain"]) for b in boots])
            for method in observed:
                value = specificity(observed[method])
                boot = np.array([specificity(b[method]) for b in boots])
                lo, hi = _ci(value, boot)
                dlo, dhi = _ci(value - plain, boot - boot_plain)
                spec_rows.append({"network": name, "family": net.family, "method": method,
                                  "specificity": value, "ci_low": lo, "ci_high": hi,
                                  "minus_plain": value - plain, "minus_plain_ci_low": dlo,
                                  "minus_plain_ci_high": dhi})
    return {"residual_scores": pd.DataFrame(score_rows),
            "residual_assignment": pd.DataFrame(assign_rows),
            "residual_specificity": pd.DataFrame(spec_rows)}

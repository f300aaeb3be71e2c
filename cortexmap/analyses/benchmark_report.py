"""Findings, figures and report sections of the real-data benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cortexmap.report import Finding, Report
from cortexmap.universal.figures import reduction_figure

TARGETS: dict[str, tuple[str, str, str]] = {
    "hIT": ("kriegeskorte92", "hIT", "human IT, fMRI, 4 subjects (2 sessions averaged)"),
    "mIT": ("kriegeskorte92", "mIT", "monkey IT, 674 neurons, one group RDM (no ceiling)"),
    "judgement": ("kriegeskorte92", "judgement", "human similarity judgements, 16 subjects"),
    "EVC": ("algonauts78", "EVC", "early visual cortex, fMRI, 15 subjects"),
    "IT": ("algonauts78", "IT", "inferior temporal cortex, fMRI, 15 subjects"),
}
HOW_TO_GET_DATA = (
    "Put the two folders `kriegeskorte92/` and `algonauts78/` in `../shared/data` (next to the "
    "checkout), in the user cache (`~/.cache/cortexmap/data`), or in a folder named by the "
    "`CORTEXMAP_DATA` environment variable; on a machine with internet access they are "
    "downloaded from the public rsatoolbox and Net2Brain repositories and checked against the "
    "SHA-256 sums shipped with cortexmap (`cortexmap data fetch`; `cortexmap data where` lists "
    "the folders searched). See docs/real_data.md."
)


def real_finding(claim: str, passed: bool, numbers: str, criterion: str,
                 control: str = "") -> Finding:
    """A finding on real brain or behaviour data."""
    return Finding(claim, bool(passed), numbers, "benchmark", evidence="real-data",
                   criterion=criterion, control=control)



#: Published analyses without a real-data test on these data sets, and why.
NO_REAL_DATA_TEST = [
    ("Center–periphery organization", "needs fMRI of regions with foveal and peripheral "
     "preference (e.g. LOC / PPA) and images with scene backgrounds; the 92 objects sit on a "
     "uniform grey background and the data hold only IT / EVC RDMs"),
    ("Layer-orthogonalizing synthesis", "synthesized images have no brain responses: testing "
     "them needs a new experiment"),
    ("Orientation selectivity and ablation", "no grating responses in these data; the network "
     "measurements are in-silico by nature"),
    ("Kernel lesions and image contrast", "no brain data at several contrast levels; lesions "
     "are network-internal (in-silico)"),
]


def _fmt(row, key: str = "score") -> str:
    return f"{row[key]:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _finding(claim: str, passed: bool, numbers: str, criterion: str,
             control: str = "") -> Finding:
    return real_finding(claim, passed, numbers, criterion, control)


def _trained_vs_untrained(result) -> list[Finding]:
    cfg = result.config
    primary = cfg.methods[0]
    best = result.tables["best"]
    pairs = result.tables["pairwise"]
    found = []
    for target in [t for t in ("hIT", "IT") if t in cfg.targets]:
        b = best[(best.target == target) & (best.method == primary)].set_index("network")
        rows = []
        for net in b.index:
            twin = f"{net}:untrained"
            if b.loc[net, "family"] == "untrained" or twin not in b.index:
                continue
            p = pairs[(pairs.target == target) & (pairs.method == primary)
                      & (((pairs.model_a == net) & (pairs.model_b == twin))
                         | ((pairs.model_a == twin) & (pairs.model_b == net)))].iloc[0]
            diff = b.loc[net, "score"] - b.loc[twin, "score"]
            rows.append((net, twin, diff, float(p.q_fdr)))
        if not rows:
            continue
        passed = all(d > 0 and q < 0.05 for _, _, d, q in rows)
        found.append(_finding(
            f"ImageNet training makes the network's best layer match {target} better than the "
            "same architecture untrained",
            passed,
            "; ".join(f"{n} {b.loc[n, 'layer']}: {_fmt(b.loc[n])}; trained - untrained = "
                      f"{d:+.3f} (q = {q:.2g})" for n, _, d, q in rows) + f" ({primary})",
            "for every trained network with a twin, its best layer scores higher than the "
            "twin's best layer, pairwise dual-bootstrap t-test FDR q < 0.05",
            control="; ".join(f"{t} {b.loc[t, 'layer']}: {_fmt(b.loc[t])}"
                              for _, t, _, _ in rows)))
    return found


def _ceiling_reached(result) -> list[Finding]:
    cfg = result.config
    primary = cfg.methods[0]
    best, ceil = result.tables["best"], result.tables["ceilings"]
    found = []
    for target in [t for t in ("hIT", "EVC", "IT") if t in cfg.targets]:
        b = best[(best.target == target) & (best.method == primary)]
        top = b.sort_values("score").iloc[-1]
        nc = ceil[(ceil.target == target) & (ceil.method == primary)].iloc[0]
        scores = result.tables["scores"]
        n_layers = int(((scores.target == target) & (scores.method == primary)).sum())
        found.append(_finding(
            f"The best network layer reaches the lower bound of the {target} noise ceiling",
            bool(nc.best_cv >= nc.lower),
            f"best layer chosen on the other subjects (leave one subject out), scored on the "
            f"held-out one: {primary} {nc.best_cv:.3f} vs ceiling [{nc.lower:.3f}, "
            f"{nc.upper:.3f}]; chosen: {nc.best_cv_layers}",
            "the cross-validated best layer's score (mean over held-out subjects) is at or "
            "above the lower bound of the noise ceiling (which is built the same way: each "
            "subject against the mean of the others)",
            control=f"the layer chosen and scored on the same subjects (best of {n_layers} "
                    f"layers of {len(b)} networks), {top.network} {top.layer}: {_fmt(top)} "
                    f"(p vs lower bound {top.p_ceiling:.2g})"))
    return found


def _hierarchy(result) -> list[Finding]:
    cfg = result.config
    if not {"EVC", "IT"} <= set(cfg.targets):
        return []
    primary = cfg.methods[0]
    best = result.tables["best"]
    b = best[best.method == primary]
    rows = []
    for net, sub in b.groupby("network", sort=False):
        s = sub.set_index("target")
        if {"EVC", "IT"} <= set(s.index):
            rows.append((net, s.loc["EVC", "family"], s.loc["EVC", "depth"],
                         s.loc["IT", "depth"], s.loc["EVC", "stability"],
                         s.loc["IT", "stability"]))
    trained = [r for r in rows if r[1] != "untrained"]
    if not trained:
        return []
    passed = all(ev < it for _, _, ev, it, _, _ in trained)
    return [_finding(
        "Earlier layers match early visual cortex and later layers IT (Algonauts-78): the best "
        "EVC layer is shallower than the best IT layer",
        passed,
        "; ".join(f"{n}: EVC depth {ev:.2f} (stability {se:.2f}) vs IT {it:.2f} "
                  f"(stability {si:.2f})" for n, f, ev, it, se, si in rows),
        "for every trained network the relative depth of the best EVC layer is below that of "
        "the best IT layer (stability = share of dual-bootstrap samples choosing that layer; "
        "untrained twins listed as the control)")]


def _reference_findings(result) -> list[Finding]:
    ref = result.tables.get("reference", pd.DataFrame())
    if ref.empty:
        return []
    primary = result.config.methods[0]
    found = []
    m = ref[(ref.comparison.str.startswith("mIT vs hIT")) & (ref.method == primary)].iloc[0]
    found.append(_finding(
        "Monkey and human IT share their representational geometry (92 images)",
        bool(m.ci_low > 0),
        f"mIT (674 neurons) vs hIT group RDM: {primary} {_fmt(m)}",
        "the stimulus-bootstrap 95 % CI of the correlation excludes 0"))
    mod = ref[(ref.comparison == "model RDM vs hIT subjects") & (ref.method == primary)]
    cat = mod[mod.best_category_vs_low_level_q.notna()].iloc[0]
    low = mod[mod.model.isin(("EVA", "HMAX", "V1", "Silhouette", "RADON"))].sort_values(
        "score").iloc[-1]
    q = float(cat.best_category_vs_low_level_q)
    found.append(_finding(
        "A categorical model explains human IT better than every low-level model (V1, HMAX, "
        "EVA, silhouette, RADON)",
        bool(cat.score > low.score and q < 0.05),
        f"{cat.model} {_fmt(cat)} vs best low-level {low.model} {_fmt(low)} (q = {q:.2g})",
        "the better of the two category models beats the best low-level model, pairwise "
        "dual-bootstrap t-test FDR q < 0.05"))
    return found


def _universal_findings(result) -> list[Finding]:
    rel = result.tables.get("universal_relation", pd.DataFrame())
    if rel.empty or "spearman_rho" not in rel:
        return []
    found = [_finding(
        "Brain similarity of a network dimension rises with its universality across networks "
        "(real data)",
        bool((rel.ci_low > 0).all()),
        "; ".join(f"{r.region} ({r.dataset}): rho = {r.spearman_rho:.2f} [{r.ci_low:.2f}, "
                  f"{r.ci_high:.2f}] over {int(r.n_dims)} dimensions" for r in rel.itertuples()),
        "Spearman(universality, brain similarity) has a stimulus-bootstrap 95 % CI above 0 "
        "in every region")]
    red = result.tables["universal_reduction"]
    parts, ok = [], []
    for (_, region), sub in red.groupby(["dataset", "region"], sort=False):
        mean = sub.groupby(["selection", "k"]).rsa.mean()
        full = mean["full layer"].mean()
        most, least = mean["most universal"], mean["least universal"]
        if full <= 0:  # nothing to keep: the full layer does not match the region
            ok.append(False)
            parts.append(f"{region}: full layer {full:.3f} (no positive RSA to keep)")
            continue
        k80 = next((k for k in most.index if k < 10 and most[k] >= 0.8 * full), None)
        ok.append(k80 is not None and most[k80] > least[k80])
        parts.append(f"{region}: full layer {full:.3f}, k80 = {k80 if k80 else 'not < 10'}"
                     + (f" (most {most[k80]:.3f} vs least {least[k80]:.3f})" if k80 else ""))
    found.append(_finding(
        "Fewer than ten most-universal dimensions keep >= 80 % of the full layer's RSA with "
        "the real region, the least-universal ones do not",
        all(ok), "; ".join(parts),
        "mean over networks: some k < 10 most-universal dimensions reach 80 % of the full "
        "layer's Spearman RSA (> 0) and beat the k least-universal ones"))
    return found


def _residual_findings(result) -> list[Finding]:
    spec = result.tables.get("residual_specificity", pd.DataFrame())
    if spec.empty:
        return []
    res = spec[(spec.method == "residual") & (spec.family != "untrained")]
    if res.empty:
        return []
    passed = bool((res.minus_plain_ci_low > 0).all())
    return [_finding(
        "Residual layer RDMs make the layer-to-region assignment more specific (earlier layers "
        "to EVC, later to IT; Algonauts-78)",
        passed,
        "; ".join(f"{r.network}: specificity residual - plain = {r.minus_plain:+.2f} "
                  f"[{r.minus_plain_ci_low:+.2f}, {r.minus_plain_ci_high:+.2f}]"
                  for r in res.itertuples()),
        "for every trained network, preferred depth(IT) - preferred depth(EVC) is larger with "
        "residual than with plain layer RDMs, stimulus-bootstrap 95 % CI of the difference "
        "above 0")]


def benchmark_findings(result) -> list[Finding]:
    """Every real-data finding of a benchmark run."""
    return [*_reference_findings(result), *_trained_vs_untrained(result),
            *_ceiling_reached(result), *_hierarchy(result), *_universal_findings(result),
            *_residual_findings(result)]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
_FAMILY_COLOURS = {"imagenet": "tab:blue", "untrained": "tab:gray", "zoo": "tab:orange",
                   "reference": "tab:green"}


def bars_figure(result, method: str):
    """One panel per target: the best layer of each network (and, for hIT, the reference
    models), sorted, with 95 % CIs and the noise-ceiling band (Khaligh-Razavi & Kriegeskorte
    2014 style)."""
    import matplotlib.pyplot as plt

    cfg = result.config
    best, ceil = result.tables["best"], result.tables["ceilings"]
    ref = result.tables.get("reference", pd.DataFrame())
    fig, axes = plt.subplots(1, len(cfg.targets), figsize=(3.4 * len(cfg.targets), 4.6),
                             squeeze=False)
    for ax, target in zip(axes[0], cfg.targets, strict=True):
        b = best[(best.target == target) & (best.method == method)]
        rows = [(f"{r.network}\n{r.layer}", r.family, r.score, r.ci_low, r.ci_high)
                for r in b.itertuples()]
        if target == "hIT" and not ref.empty:
            m = ref[(ref.comparison == "model RDM vs hIT subjects") & (ref.method == method)]
            rows += [(r.model, "reference", r.score, r.ci_low, r.ci_high) for r in m.itertuples()]
        rows.sort(key=lambda r: r[2])
        x = np.arange(len(rows))
        nc = ceil[(ceil.target == target) & (ceil.method == method)].iloc[0]
        if np.isfinite(nc.lower):
            ax.axhspan(nc.lower, nc.upper, color="0.85", zorder=0, label="noise ceiling")
        vals = np.array([r[2] for r in rows])
        err = np.array([[r[2] - r[3], r[4] - r[2]] for r in rows]).T
        ax.bar(x, vals, color=[_FAMILY_COLOURS[r[1]] for r in rows], zorder=2)
        ax.errorbar(x, vals, yerr=err, fmt="none", ecolor="k", lw=0.8, zorder=3)
        ax.set_xticks(x, [r[0] for r in rows], rotation=90, fontsize=6)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{target} ({int(nc.n_subjects)} subj.)", fontsize=9)
        ax.set_ylabel(method)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _FAMILY_COLOURS.values()]
    fig.legend(handles + [plt.Rectangle((0, 0), 1, 1, color="0.85")],
               [*_FAMILY_COLOURS, "noise ceiling"], loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def profile_figure(result, method: str):
    """Score of every layer against depth, one line per network, one panel per target."""
    import matplotlib.pyplot as plt

    cfg = result.config
    scores = result.tables["scores"]
    fig, axes = plt.subplots(1, len(cfg.targets), figsize=(3.2 * len(cfg.targets), 3.2),
                             squeeze=False, sharex=True)
    for ax, target in zip(axes[0], cfg.targets, strict=True):
        sub = scores[(scores.target == target) & (scores.method == method)]
        for net, s in sub.groupby("network", sort=False):
            ax.plot(s.depth, s.score, "o-", ms=3, lw=1,
                    color=_FAMILY_COLOURS[s.family.iloc[0]], alpha=0.8, label=net)
        ax.set_title(target, fontsize=9)
        ax.set_xlabel("relative layer depth")
        ax.set_ylabel(method)
    axes[0][0].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def benchmark_figures(result) -> dict:
    """{relative path: figure}: the bar and profile figures of every method, under figures/."""
    return {f"figures/{name}_{method}.png": make(result, method)
            for method in result.config.methods
            for name, make in (("bars", bars_figure), ("profiles", profile_figure))}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def add_benchmark_sections(result, report: Report) -> None:
    if result.skipped:
        report.section(
            "Real data: skipped",
            f"The real-data part did not run: {result.skipped}\n\n{HOW_TO_GET_DATA}")
        return
    cfg = result.config
    t = result.tables
    primary = cfg.methods[0]
    sec = report.section(
        "Real data: model-vs-brain benchmark",
        "Every chosen layer of every network against real brain and behaviour RDMs: "
        + "; ".join(f"**{k}** = {TARGETS[k][2]}" for k in cfg.targets)
        + f". Score = mean over subjects of {', '.join(cfg.methods)} with the subject RDMs; "
        "95 % CIs and tests from the dual bootstrap over stimuli and subjects "
        f"({cfg.n_boot} samples, as rsatoolbox); grey band = noise ceiling (lower: "
        "leave-one-subject-out; upper: all subjects). Evidence class: real-data.")
    sec.figure(bars_figure(result, primary),
               f"Best layer of each network per target ({primary}), with 95 % CIs, sorted; for "
               "hIT also the 8 classic model RDMs and monkey IT (green). Blue: ImageNet-trained; "
               "grey: untrained twins; orange: zoo.")
    sec.figure(profile_figure(result, primary),
               f"{primary} of every chosen layer against its relative depth, per network.")
    sec.table(t["ceilings"], "Noise ceilings per target and method.")
    sec.table(t["families"][["target", "family", "network", "layer", "depth", "score", "ci_low",
                             "ci_high", "stability", "p_ceiling"]],
              f"Best network layer of each family per target ({primary}); stability = share "
              "of bootstrap samples in which that layer is the network's best.")
    sec.table(t["pairwise"][t["pairwise"].method == primary],
              "Best layers of the networks against each other (dual-bootstrap t-tests, FDR).")
    if not t["reference"].empty:
        sec.table(t["reference"][["comparison", "model", "method", "score", "ci_low",
                                  "ci_high", "p_zero", "p_ceiling", "ceiling_lower",
                                  "ceiling_upper"]],
                  "Classic reference comparisons on the 92 images: monkey IT against the human IT "
                  "group RDM, and the 8 model RDMs and monkey IT against the 4 hIT subjects.")
    if "universal_relation" in t:
        sub = report.section(
            "Real data: universal dimensions",
            "Universality of each principal dimension (cross-validated ridge prediction from "
            "the other trained networks) against its brain similarity, the Spearman "
            "correlation of the dimension's own RDM with the region's group RDM (only RDMs are "
            "public for these data). CIs: stimulus bootstrap, universality held fixed.")
        sub.table(t["universal_relation"], "Spearman(universality, brain similarity).")
        if "universal_reduction" in t:
            for (dataset, region), red in t["universal_reduction"].groupby(
                    ["dataset", "region"], sort=False):
                sub.figure(reduction_figure(red), f"{region} ({dataset}): RSA of the k most "
                           "(blue) and least (grey) universal dimensions, mean over networks.")
    if "residual_specificity" in t:
        sub = report.section(
            "Real data: residual method",
            "Plain layer RDMs, residual RDMs (each layer's rank RDM with the other layers "
            "regressed out) and partial correlations against group RDMs of EVC and IT "
            "(Algonauts-78) and hIT (92 images). Specificity = preferred depth of IT minus that "
            "of EVC (depth centre of mass of the positive similarities): larger = earlier "
            "layers to EVC, later to IT. Stability = share of stimulus bootstraps that choose "
            "the same best layer.")
        sub.table(t["residual_specificity"], "Specificity per network and method (95 % CIs).")
        sub.table(t["residual_assignment"], "Best layer per region and method.", max_rows=80)
    report.section("Real data: what has no real-data test here").table(
        pd.DataFrame(NO_REAL_DATA_TEST, columns=["analysis", "why not on these data"]),
        "Findings of the published analyses that these two data sets cannot test.")

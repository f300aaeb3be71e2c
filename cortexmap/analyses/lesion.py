"""Kernel lesions (Akbarinia & Gegenfurtner, Vision Research 2020): lesion every kernel of each
chosen layer, measure test accuracy at each contrast level, find the kernels whose removal hurts
low-contrast images most, show what they look like, and test causally that removing those few
kernels together hurts low contrast more than removing as many random kernels.

It follows the analysis contract (:mod:`cortexmap.analyses.base`); the lesion engine lives in
:mod:`cortexmap.probes.lesion`, the network and test set are prepared as for the contrast
analysis (:mod:`cortexmap.analyses.classification`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, ConfigDict, Field
from torch import nn

from cortexmap.analyses.base import Count, ModelSpec, Scheduler, Seed, write_outputs
from cortexmap.analyses.classification import (
    ZOO_CONV_LAYERS,
    TestImages,
    informative_levels,
    pct,
    prepare_test,
)
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.weights import weights_record
from cortexmap.probes import contrast as ct
from cortexmap.probes import lesion as ls
from cortexmap.probes.testset import TestSetFields, name_proxy
from cortexmap.report import Finding
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, safe_filenames, write_table


def _lesion_sets(text):
    """'conv1:3+7+9;conv2:1+2' -> {'conv1': [[3, 7, 9]], 'conv2': [[1, 2]]}; a mapping passes."""
    if not isinstance(text, str):
        return text
    out: dict[str, list[list[int]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        layer, sep, kernels = part.partition(":")
        try:
            ks = [int(k) for k in kernels.split("+") if k.strip()]
        except ValueError:
            ks = []
        if not sep or not ks:
            raise ValueError(f"cannot read the lesion set {part!r}; write LAYER:K1+K2+..., sets "
                             "separated by ';', e.g. 'conv1:3+7+9;conv2:1+2'")
        out.setdefault(layer.strip(), []).append(ks)
    return out


def _prepare_out(outdir: str | os.PathLike, overwrite: bool, resumable: bool) -> Path:
    """Output folder; a folder holding a partial sweep may be re-used to resume it."""
    out = Path(outdir)
    if resumable and (out / "sweep").is_dir():
        return out
    return prepare_output_dir(out, overwrite)


class LesionConfig(TestSetFields):
    """Settings of :func:`run_lesion` (defaults: the zoo AlexNet trained with contrast
    augmentation, on the procedural test split).

    model: model spec for :func:`cortexmap.models.load` (the default ``alexnet_supcontrast_s0``
    keeps several contrast levels between chance and ceiling, where a lesion's contrast effect
    can show; ``alexnet_sup_s0`` is at chance below ~10 % contrast); layers: layers whose
    kernels are lesioned; contrasts: levels in (0, 1]; contrast_kind: "relative" (scale about
    each image's mean, the paper's manipulation), "rms" or "michelson" (absolute); n_images / seed /
    image_size: the procedural test split; mode: "zero" or "mean" replacement; per_class: also
    accuracy per class; lesion_sets: {layer: [[k1, k2, ...], ...]} extra multi-kernel lesions;
    n_top: kernels reported per layer and removed together in the causal test;
    low_contrast_max: levels counted as "low" (None = from the network's psychometric range,
    see :func:`cortexmap.probes.lesion.low_contrast_levels`); n_random_sets: random control
    sets; batch_lesions / max_batch: lesions per forward pass and rows per batch; n_workers /
    scheduler: Dask (0 / None = in-process); resume: reuse finished layers in ``OUT/sweep``.
    test_images / test_labels / class_names / accuracy: the user's test set or the agreement
    proxy instead of the procedural split (:mod:`cortexmap.probes.testset`).
    """

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = "zoo:alexnet_supcontrast_s0"
    layers: list[str] = Field(default_factory=lambda: list(ZOO_CONV_LAYERS), min_length=1)
    contrasts: ct.ContrastLevels = Field(default_factory=lambda: list(ct.DEFAULT_CONTRASTS))
    contrast_kind: Literal["relative", "rms", "michelson"] = "relative"
    n_images: TestImages = 200
    seed: Seed = 0
    image_size: Count = 64
    mode: Literal["zero", "mean"] = "zero"
    per_class: bool = False
    lesion_sets: Annotated[dict[str, list[list[int]]], BeforeValidator(_lesion_sets)] = Field(
        default_factory=dict, description="extra multi-kernel lesions, {layer: [[k1, k2], ...]} "
        "or 'conv1:3+7+9;conv2:1+2'")
    n_top: Count = 5
    low_contrast_max: float | None = Field(None, gt=0, le=1)
    n_random_sets: int = Field(199, ge=0)  # p-values down to 1 / (1 + 199) = 0.005
    batch_lesions: int | None = Field(None, ge=1)
    max_batch: Count = 512
    n_workers: int = Field(0, ge=0)
    scheduler: Scheduler = None
    resume: bool = True


@dataclass
class LesionResult:
    """Outputs of :func:`run_lesion`.

    tables: "drops" (layer, lesion, kernels, contrast, accuracy, baseline_accuracy, drop, ...),
    "baseline" (layer, contrast, accuracy), "top_kernels", "sets" (top / random / user
    multi-kernel lesions, measured on the held-out half of the images; the top set is chosen on
    the other half), "appearance" (preferred gratings of top kernels of deeper layers) and,
    with per_class, "per_class".
    """

    config: LesionConfig
    tables: dict[str, pd.DataFrame]
    findings: list[Finding]
    kernel_images: dict[str, tuple[np.ndarray, list[str], str]] = field(default_factory=dict)
    outdir: Path | None = None
    low_levels: list[float] = field(default_factory=list)
    accuracy_measure: str = "top-1 accuracy against the labels"

    def matrix(self, layer: str) -> pd.DataFrame:
        """kernels x contrast drop matrix of ``layer``."""
        return ls.LesionSweep(self.tables["drops"], self.tables["baseline"]).matrix(layer)

    def add_to_report(self, report) -> None:
        cfg = self.config
        levels = ", ".join(f"{100 * c:g}%" for c in cfg.contrasts)
        sec = report.section(
            "Kernel lesions and image contrast",
            f"Each kernel of {', '.join(cfg.layers)} of `{cfg.model}` was removed in turn "
            f"({cfg.mode} replacement) and accuracy ({self.accuracy_measure}) was measured "
            f"at contrasts {levels}"
            " (Akbarinia & Gil-Rodríguez, Vision Research 2020).",
        )
        base = self.tables["baseline"]
        sec.table(base[base["class"] == "all"].pivot(index="layer", columns="contrast",
                                                    values="accuracy").iloc[:1].reset_index(),
                  "Intact network: accuracy at each contrast level.")
        for layer in cfg.layers:
            sub = sec.subsection(f"Lesions of {layer}")
            sub.figure(ls.plot_drop_heatmap(self.matrix(layer), layer),
                       f"{layer}: accuracy drop (intact - lesioned) for each removed kernel "
                       "(rows) and contrast level (columns); red = removal hurts.")
            top = self.tables["top_kernels"]
            sub.table(top[top["layer"] == layer],
                      f"{layer}: the kernels whose removal hurts low-contrast ("
                      f"{pct(self.low_levels)}) images most.")
            if layer in self.kernel_images:
                imgs, titles, what = self.kernel_images[layer]
                sub.figure(ls.plot_images(imgs, titles, f"{layer}: {what}"),
                           f"{layer}: what the top low-contrast kernels look like ({what}).")
        sets = self.tables["sets"]
        if len(sets):
            summary = (sets[sets["contrast"].isin(self.low_levels)]
                       .groupby(["layer", "set_type"])["drop"].agg(["mean", "max", "size"])
                       .reset_index())
            sec.table(summary, "Multi-kernel lesions: mean low-contrast accuracy drop when the top "
                      f"{cfg.n_top} kernels, {cfg.n_top} random kernels or user sets are removed "
                      "together (top kernels chosen on one half of the images, all sets measured "
                      "on the other half).")


def run_lesion(
    config: LesionConfig,
    outdir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    *,
    model: nn.Module | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> LesionResult:
    """Kernel-lesion sweep over ``config.layers`` at ``config.contrasts``; writes to ``outdir``.

    Outputs (each atomically): ``lesion_drops``, ``lesion_baseline``, ``top_kernels``,
    ``lesion_sets``, ``kernel_appearance`` [, ``lesion_per_class``] and one kernels x contrast
    ``lesion_matrix_<layer>`` per layer as Parquet + CSV,
    ``heatmap_<layer>.png``, ``top_kernels_<layer>.png``, ``report.html``, ``provenance.json``,
    and the per-layer
    partial results under ``sweep/`` that let an interrupted run resume.

    Keyword overrides for API users: ``model`` (an nn.Module instead of ``config.model``),
    ``images`` (n, H, W, 3) full-contrast test images in [0, 1] with ``labels`` (n,) instead of
    the procedural test split.
    """
    net, tested = prepare_test(config, model, images, labels, class_names)
    images, labels, class_names = tested.images, tested.targets, tested.class_names
    ibc = ct.contrast_series(images, config.contrasts, config.contrast_kind)
    out = _prepare_out(outdir, overwrite, config.resume)
    client = None
    if config.n_workers > 0 or config.scheduler:
        client = get_client(config.scheduler, n_workers=config.n_workers or None)
    try:
        common = dict(mode=config.mode, per_class=config.per_class, class_names=class_names,
                      batch_lesions=config.batch_lesions, max_batch=config.max_batch,
                      client=client, progress=progress)
        # Two disjoint halves of the images: the multi-kernel test selects the top kernels on
        # one half and measures them on the other (no double dipping); every other output pools
        # both halves (the same work as one sweep over all images).
        labels = np.asarray(labels)
        order = np.arange(len(labels))
        halves = [order[0::2], order[1::2]] if len(labels) > 1 else [order, order]
        sweeps = [
            ls.lesion_sweep(net, config.layers, {c: v[h] for c, v in ibc.items()}, labels[h],
                            resume_dir=out / "sweep" / f"kernels_{name}" if config.resume
                            else None, **common)
            for h, name in zip(halves, ("select", "heldout"), strict=True)
        ]
        sweep = ls.combine_sweeps(sweeps)
        low_levels = ls.low_contrast_levels(sweep.baseline, 1.0 / tested.n_classes,
                                            config.low_contrast_max)
        top = ls.top_low_contrast_kernels(sweep.drops(), config.n_top, low_levels)
        top_select = ls.top_low_contrast_kernels(sweeps[0].drops(), config.n_top, low_levels)
        # the specificity test picks its set by (low - high) drop, also on the selection half
        every = ls.top_low_contrast_kernels(sweeps[0].drops(), max(sweep.n_channels.values()),
                                            low_levels)
        spec_select = (every.sort_values(["layer", "specificity", "kernel"],
                                         ascending=[True, False, True])
                       .groupby("layer", sort=False).head(config.n_top))
        sets, set_types, chosen = _lesion_sets(config, sweep.n_channels, top_select,
                                               spec_select)
        held = halves[1]
        set_sweep = ls.lesion_sweep(net, config.layers, {c: v[held] for c, v in ibc.items()},
                                    labels[held], lesion_sets=sets,
                                    resume_dir=out / "sweep" / "sets" if config.resume else None,
                                    **common)
    finally:
        close_client(client)

    set_table = set_sweep.drops("set")
    set_table.insert(3, "set_type", [set_types[(r.layer, r.lesion)]
                                     for r in set_table.itertuples()])
    kernel_images, appearance = _appearance(net, config, top)
    tables = {"drops": sweep.drops(), "baseline": sweep.baseline, "top_kernels": top,
              "sets": set_table, "appearance": appearance}
    if config.per_class:
        tables["per_class"] = sweep.per_class()
    chance = 1.0 / tested.n_classes
    result = LesionResult(config, tables,
                          _lesion_findings(config, tables, low_levels, chance, chosen),
                          kernel_images, out, low_levels, tested.measure)
    if tested.proxy:
        name_proxy(result.findings)

    stems = {"drops": "lesion_drops", "baseline": "lesion_baseline", "top_kernels": "top_kernels",
             "sets": "lesion_sets", "appearance": "kernel_appearance",
             "per_class": "lesion_per_class"}
    names = safe_filenames(list(config.layers), "layer")
    matrices, figures = {}, {}
    for layer in config.layers:
        matrix = result.matrix(layer)  # kernels x contrast, the paper's table
        wide = matrix.rename(columns=lambda c: f"drop_{100 * c:g}%").reset_index()
        matrices[f"lesion_matrix_{names[layer]}"] = partial(
            write_table, wide.rename(columns={"lesion": "kernel"}))
        figures[f"heatmap_{names[layer]}.png"] = ls.plot_drop_heatmap(matrix, layer)
        if layer in kernel_images:
            imgs, titles, what = kernel_images[layer]
            figures[f"top_kernels_{names[layer]}.png"] = ls.plot_images(imgs, titles,
                                                                        f"{layer}: {what}")
    write_outputs(result, out, f"Kernel lesions and contrast: {config.model}",
                  table_files=stems, findings=False, files=matrices, figures=figures,
                  inputs={"test_images": np.asarray(images), "labels": np.asarray(labels)},
                  models={config.model: weights_record(net)})
    return result


def _lesion_sets(config: LesionConfig, n_channels: dict[str, int], top: pd.DataFrame,
                 specific: pd.DataFrame):
    """Per layer: the top-n set (largest low-contrast drops), the specific set (largest low -
    high drops), ``n_random_sets`` random sets of the same size and the user's sets.

    Returns the sets per layer, the type of each (layer, lesion name) and the lesion names of
    the chosen sets {(layer, "top" | "specific"): name} (the two may be the same lesion)."""
    rng = np.random.default_rng(config.seed)
    sets: dict[str, list[list[int]]] = {}
    types: dict[tuple[str, str], str] = {}
    names: dict[tuple[str, str], str] = {}
    for layer in config.layers:
        n_ch = n_channels[layer]
        k = min(config.n_top, n_ch - 1)  # never remove the whole layer
        chosen = top[top["layer"] == layer].sort_values("rank")["kernel"].tolist()[:k]
        spec = specific[specific["layer"] == layer]["kernel"].tolist()[:k]
        names[(layer, "top")] = ls.lesion_name(sorted(chosen))
        names[(layer, "specific")] = ls.lesion_name(sorted(spec))
        entries = [("top", sorted(chosen)), ("specific", sorted(spec))]
        entries += [("random", sorted(rng.choice(n_ch, size=k, replace=False).tolist()))
                    for _ in range(config.n_random_sets)]
        entries += [("user", sorted(int(i) for i in s))
                    for s in config.lesion_sets.get(layer, [])]
        layer_sets: list[list[int]] = []
        for kind, s in entries:
            name = ls.lesion_name(s)
            if (layer, name) in types:  # a random draw equal to the top set counts once
                continue
            types[(layer, name)] = kind
            layer_sets.append(s)
        sets[layer] = layer_sets
    return sets, types, names


def _appearance(net: nn.Module, config: LesionConfig, top: pd.DataFrame):
    """First-layer weights as RGB images; preferred gratings for deeper layers."""
    images: dict[str, tuple[np.ndarray, list[str], str]] = {}
    rows = []
    for layer in config.layers:
        kernels = top[top["layer"] == layer].sort_values("rank")["kernel"].tolist()
        if not kernels:
            continue
        conv = ls.first_layer_conv(net, layer)
        if conv is not None:
            rgb = ls.kernel_rgb(conv.weight[kernels])
            images[layer] = (rgb, [f"k{k}" for k in kernels], "first-layer weights (RGB)")
            continue
        table, imgs = ls.preferred_gratings(net, layer, kernels,
                                            size=input_size_of(net, default=config.image_size))
        table.insert(0, "layer", layer)
        rows.append(table)
        titles = [f"k{r.kernel}: {r.orientation_deg:g}°, {r.spatial_freq_cpi:g} c/i"
                  for r in table.itertuples()]
        images[layer] = (imgs, titles, "preferred gratings")
    cols = ["layer", "kernel", "orientation_deg", "spatial_freq_cpi", "phase_deg", "response",
            "tuning_depth"]
    return images, (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols))


MIN_INFORMATIVE = 3  # contrast levels between chance + 20 % and the ceiling a test needs


def _lesion_findings(config: LesionConfig, tables: dict[str, pd.DataFrame],
                     low_levels: list[float], chance: float,
                     chosen: dict[tuple[str, str], str]) -> list[Finding]:
    from scipy.stats import wilcoxon

    drops, sets, base = tables["drops"], tables["sets"], tables["baseline"]
    b = base[base["class"] == "all"] if "class" in base else base
    intact = b.groupby("contrast")["accuracy"].mean()
    info = informative_levels(intact.index.to_numpy(), intact.to_numpy(), chance)
    enough = len(info) >= MIN_INFORMATIVE
    levels_text = (f"{len(info)} informative level(s) between chance + 0.2 and the ceiling "
                   f"({pct(info) or 'none'}; intact accuracy " + ", ".join(
                       f"{100 * c:g}% {a:.2f}" for c, a in intact.sort_index(
                           ascending=False).items()) + ")")
    low = drops["contrast"].isin(low_levels)
    high = drops["contrast"] == drops["contrast"].max()
    # ceiling-matched: each drop as a fraction of that level's headroom above chance, so a level
    # near ceiling and a level near chance are compared on the same scale
    headroom = (drops["baseline_accuracy"] - chance).clip(lower=1e-3)
    rel = drops.assign(rel=drops["drop"] / headroom)
    per_kernel = pd.DataFrame({
        "low": drops[low].groupby(["layer", "lesion"])["drop"].mean(),
        "high": drops[high].groupby(["layer", "lesion"])["drop"].mean(),
        "low_rel": rel[low].groupby(["layer", "lesion"])["rel"].mean(),
        "high_rel": rel[high].groupby(["layer", "lesion"])["rel"].mean(),
    }).dropna()
    diff = per_kernel["low"] - per_kernel["high"]
    p_raw = float(wilcoxon(diff, alternative="greater").pvalue) if (diff != 0).any() else 1.0
    diff_rel = per_kernel["low_rel"] - per_kernel["high_rel"]
    p_rel = (float(wilcoxon(diff_rel, alternative="greater").pvalue)
             if (diff_rel != 0).any() else 1.0)
    findings = [Finding(
        claim="Removing single kernels hurts low-contrast images more than full-contrast ones, "
              "beyond the ceiling effect (drops as a fraction of each level's headroom above "
              "chance).",
        reproduced=bool(diff_rel.mean() > 0 and per_kernel["low"].mean() > 0 and p_rel < 0.05
                        and enough),
        numbers=(f"headroom-normalised drop at low contrast ({pct(low_levels)}) "
                 f"{per_kernel['low_rel'].mean():.4f} vs at {100 * drops['contrast'].max():g}% "
                 f"{per_kernel['high_rel'].mean():.4f} over {len(per_kernel)} kernels "
                 f"(one-sided Wilcoxon p = {p_rel:.2g}); {levels_text}."),
        analysis="lesion",
        evidence="in-silico",
        criterion=f"Headroom-normalised single-kernel drops are larger at low than at full "
                  f"contrast (one-sided Wilcoxon p < 0.05), with at least {MIN_INFORMATIVE} "
                  "informative contrast levels.",
        control=(f"raw drops (no ceiling matching): {per_kernel['low'].mean():.4f} at low vs "
                 f"{per_kernel['high'].mean():.4f} at full contrast (p = {p_raw:.2g})."),
    )]
    low_sets = sets[sets["contrast"].isin(low_levels)]
    high_sets = sets[sets["contrast"] == sets["contrast"].max()]
    lines, pvals, spec_lines, spec_p, top_spec = [], {}, [], {}, []
    for layer in config.layers:
        test = _set_test(low_sets, layer, chosen[(layer, "top")])
        if test is not None:
            top_drop, rand, pvals[layer] = test
            lines.append(f"{layer}: top-{config.n_top} set {top_drop:.3f} vs random "
                         f"{rand.mean():.3f} (p = {pvals[layer]:.2g})")
        for kind in ("specific", "top"):
            st = _specificity_test(low_sets, high_sets, layer, chosen[(layer, kind)])
            if st is None:
                continue
            spec, rand_spec, p_s = st
            line = (f"{layer}: {kind} set {spec:+.3f} vs random {rand_spec.mean():+.3f} "
                    f"(p = {p_s:.2g})")
            if kind == "specific":
                spec_p[layer] = p_s
                spec_lines.append(line)
            else:
                top_spec.append(line)
    wins = sum(p < 0.05 for p in pvals.values())
    findings.append(Finding(
        claim=(f"A handful of kernels carries low-contrast recognition: removing the "
               f"{config.n_top} kernels that matter most at low contrast hurts more than removing "
               f"{config.n_top} random kernels (first lesioned layer; kernels chosen on one half "
               "of the images, tested on the other)."),
        reproduced=pvals.get(config.layers[0], 1.0) < 0.05,
        numbers=f"low contrast = {pct(low_levels)}; " + "; ".join(lines)
        + f" ({wins}/{len(lines)} layers with p < 0.05).",
        analysis="lesion",
        evidence="in-silico",
        criterion="In the first lesioned layer the top set's low-contrast drop beats the random "
                  "sets' (empirical p < 0.05).",
        control=f"{config.n_random_sets} random sets per layer; the top set's contrast "
                "specificity (low - full contrast drop) vs theirs: " + "; ".join(top_spec) + ".",
    ))
    first = config.layers[0]
    findings.append(Finding(
        claim=(f"Some kernels are specific to low contrast: the {config.n_top} kernels whose "
               "removal hurts low contrast most relative to full contrast (chosen on one half "
               "of the images) are more contrast-specific on the other half than random sets."),
        reproduced=bool(spec_p.get(first, 1.0) < 0.05 and enough),
        numbers=f"specificity = mean drop at {pct(low_levels)} - drop at "
                f"{100 * sets['contrast'].max():g}% on the held-out half; " + "; ".join(spec_lines)
                + f"; {levels_text}.",
        analysis="lesion",
        evidence="in-silico",
        criterion=f"In the first lesioned layer the specific set's held-out specificity beats "
                  f"the random sets' (empirical p < 0.05), with at least {MIN_INFORMATIVE} "
                  "informative contrast levels.",
        control=f"{config.n_random_sets} random sets of {config.n_top} kernels per layer on the "
                "same held-out images (their mean specificity beside each set above).",
    ))
    return findings


def _set_test(low_sets: pd.DataFrame, layer: str, name: str
              ) -> tuple[float, np.ndarray, float] | None:
    """The chosen set's low-contrast drop, the random sets' drops and the empirical one-sided
    p-value (1 + #random >= chosen) / (1 + #random); None when the layer lacks either."""
    g = low_sets[low_sets["layer"] == layer]
    mine = g[g["lesion"] == name]["drop"]
    rand = g[g["set_type"] == "random"].groupby("lesion")["drop"].mean().to_numpy()
    if not len(mine) or not len(rand):
        return None
    top = float(mine.mean())
    return top, rand, float((1 + np.sum(rand >= top)) / (1 + len(rand)))


def _specificity_test(low_sets: pd.DataFrame, high_sets: pd.DataFrame, layer: str, name: str
                      ) -> tuple[float, np.ndarray, float] | None:
    """Specificity (mean low-contrast drop - full-contrast drop) of the chosen set, of the
    random sets, and the empirical one-sided p-value; None when the layer lacks either."""
    lo = low_sets[low_sets["layer"] == layer].groupby("lesion")["drop"].mean()
    hi = high_sets[high_sets["layer"] == layer].groupby("lesion")["drop"].mean()
    spec = (lo - hi).dropna()
    rand_names = set(low_sets[(low_sets["layer"] == layer)
                              & (low_sets["set_type"] == "random")]["lesion"])
    rand = spec[spec.index.isin(rand_names)].to_numpy()
    if name not in spec.index or not len(rand):
        return None
    mine = float(spec[name])
    return mine, rand, float((1 + np.sum(rand >= mine)) / (1 + len(rand)))

"""Kernel lesions and image contrast (Akbarinia & Gegenfurtner, Vision Research 2020): two
analyses that share the test set and the network.

* :func:`run_lesion` — lesion every kernel of each chosen layer, measure test accuracy at each
  contrast level, find the kernels whose removal hurts low-contrast images most, show what they
  look like, and test causally that removing those few kernels together hurts low contrast more
  than removing as many random kernels.
* :func:`run_contrast` — accuracy-vs-contrast curve with its contrast at half maximum, where
  contrast is encoded (linear decoding and RSA per layer), and divisive normalisation of the
  input or of a layer as a baseline mechanism.

Both follow the analysis contract (:mod:`cortexmap.analyses.base`); the science (the lesion
engine, contrast curves, decoding, normalisation) lives in :mod:`cortexmap.probes.lesion` and
:mod:`cortexmap.probes.contrast`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator
from torch import nn

from cortexmap.analyses.base import Count, ModelSpec, PatternMetric, Scheduler, Seed
from cortexmap.errors import CortexmapError
from cortexmap.models import load, resolve_layers
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.weights import weights_record
from cortexmap.probes import contrast as ct
from cortexmap.probes import lesion as ls
from cortexmap.probes.testset import (
    TestSet,
    TestSetFields,
    check_model_fits,
    name_proxy,
    resolve_test_set,
)
from cortexmap.report import Finding, Report
from cortexmap.report.figures import save_figure
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, safe_filenames, write_table
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import write_provenance

ZOO_CONV_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


# --------------------------------------------------------------------------- shared plumbing
def _load_model(spec: str, model: nn.Module | None) -> nn.Module:
    if model is not None:
        return model.eval()

    return load(spec).eval()


def _some_images(n_images: int) -> int:
    if n_images < 1:
        raise ValueError(f"the test set is empty (n_images={n_images}); use at least one image "
                         "per class, e.g. n_images=200")
    return n_images


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


#: Images of the procedural test split.
TestImages = Annotated[int, AfterValidator(_some_images)]


@dataclass
class _Tested:
    """The test set of a run: full-contrast images (n, S, S, 3), what accuracy is measured
    against (n,), class names, the size of the label space and how accuracy is defined."""

    images: np.ndarray
    targets: np.ndarray
    class_names: list[str] | None
    n_classes: int
    measure: str
    proxy: bool


def _test_set(config, net: nn.Module, images, labels, class_names) -> _Tested:
    """The config's test set (procedural split, the user's folder + labels, or the agreement
    proxy) or the API's ``images`` / ``labels``; a network whose outputs do not fit it is
    refused here, before any output exists."""
    proxy = config.accuracy == "agreement"
    if images is None:
        ts = resolve_test_set(config, input_size_of(net, default=config.image_size),
                              config.n_images, config.seed)
    else:
        images = np.asarray(images, dtype=np.float32)
        if labels is None and not proxy:
            raise CortexmapError("images= needs labels= (one class index per image), or "
                                 "accuracy='agreement' for the proxy.")
        ct.check_test_set(images, labels)
        ts = TestSet(images, None if proxy else np.asarray(labels), class_names,
                     len(class_names) if class_names else None, "the images given", proxy)
    k = check_model_fits(net, ts)
    n_classes = ts.n_classes or k or int(np.max(ts.labels)) + 1
    return _Tested(ts.images, ts.targets(net), None if proxy else ts.class_names, n_classes,
                   ts.describe(), proxy)


def _prepare_out(outdir: str | os.PathLike, overwrite: bool, resumable: bool) -> Path:
    """Output folder; a folder holding a partial sweep may be re-used to resume it."""
    out = Path(outdir)
    if resumable and (out / "sweep").is_dir():
        return out
    return prepare_output_dir(out, overwrite)


# --------------------------------------------------------------------------- lesion analysis
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
                      f"{_pct(self.low_levels)}) images most.")
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
    net = _load_model(config.model, model)
    tested = _test_set(config, net, images, labels, class_names)
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
    for key, df in tables.items():
        write_table(df, out / stems[key])
    files = safe_filenames(list(config.layers), "layer")
    for layer in config.layers:
        matrix = result.matrix(layer)  # kernels x contrast, the paper's table
        wide = matrix.rename(columns=lambda c: f"drop_{100 * c:g}%").reset_index()
        wide = wide.rename(columns={"lesion": "kernel"})
        write_table(wide, out / f"lesion_matrix_{files[layer]}")
        save_figure(ls.plot_drop_heatmap(matrix, layer), out / f"heatmap_{files[layer]}.png")
        if layer in kernel_images:
            imgs, titles, what = kernel_images[layer]
            save_figure(ls.plot_images(imgs, titles, f"{layer}: {what}"),
                        out / f"top_kernels_{files[layer]}.png")
    _write_report(result, f"Kernel lesions and contrast: {config.model}", out)
    write_provenance(out, config=config, seed=config.seed,
                     inputs={"test_images": np.asarray(images), "labels": np.asarray(labels)},
                     models={config.model: weights_record(net)})
    return result


def _write_report(result, title: str, out: Path) -> None:
    report = Report(title)
    result.add_to_report(report)
    report.findings(result.findings)
    report.write(out / "report.html")


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


def _pct(levels) -> str:
    return ", ".join(f"{100 * c:g}%" for c in sorted(levels, reverse=True))


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
                   f"({_pct(info) or 'none'}; intact accuracy " + ", ".join(
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
        numbers=(f"headroom-normalised drop at low contrast ({_pct(low_levels)}) "
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
        numbers=f"low contrast = {_pct(low_levels)}; " + "; ".join(lines)
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
        numbers=f"specificity = mean drop at {_pct(low_levels)} - drop at "
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


# --------------------------------------------------------------------------- contrast analysis
PIXEL_BASELINE = "pixel statistics"  # the baseline decoding table's one row


class ContrastConfig(TestSetFields):
    """Settings of :func:`run_contrast`.

    model / contrasts / contrast_kind / n_images / seed / image_size / per_class: as in
    :class:`LesionConfig`; layers: layers for decoding and RSA; pooling: how a layer's map
    becomes features (spatial "mean" by default); n_splits: cross-validation folds (grouped by
    image); rsa_images: images used for the RSA (x contrast levels = conditions); rsa_metric:
    RDM distance (default Euclidean: contrast changes magnitude, which correlation ignores);
    norm_layer: layer followed by divisive normalisation (None = only the input stage);
    norm_pool / input_norm_pool: normalisation pool sizes (odd, pixels of the map / image);
    norm_sigma: semi-saturation constant as a fraction of the typical full-contrast energy.
    test_images / test_labels / class_names / accuracy: as in :class:`LesionConfig`.
    control_model: a network with the same layer names (typically the untrained twin,
    ``"NAME:untrained"``) whose contrast decoding is measured on the same images as the control
    of the decoding finding (table ``contrast_decoding_control``).
    """

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = "zoo:alexnet_sup_s0"
    contrasts: ct.ContrastLevels = Field(default_factory=lambda: list(ct.DEFAULT_CONTRASTS))
    contrast_kind: Literal["relative", "rms", "michelson"] = "relative"
    n_images: TestImages = 200
    seed: Seed = 0
    image_size: Count = 64
    per_class: bool = False
    layers: list[str] = Field(default_factory=lambda: [*ZOO_CONV_LAYERS, "fc6", "fc7"],
                              min_length=1)
    pooling: Literal["mean", "max", "center", "none"] = "mean"
    n_splits: int = Field(5, ge=2)
    rsa_images: int = Field(30, ge=2)
    # Contrast mostly scales response magnitude, which correlation distance ignores (and a
    # silent layer at 1 % contrast has no correlation at all): Euclidean distance sees it.
    rsa_metric: PatternMetric = "euclidean"
    norm_layer: str | None = "conv1"
    norm_pool: int = 3
    input_norm_pool: int = 9
    norm_sigma: float = Field(0.1, gt=0)
    # a second network (e.g. "mobilenet_v2:untrained") whose contrast decoding per layer is
    # measured on the same images as a control (same layer names)
    control_model: str | None = None

    @field_validator("contrasts")
    @classmethod
    def _curve_levels(cls, v: list[float]) -> list[float]:
        if len(v) < 3:
            raise ValueError(f"a contrast curve needs at least 3 contrast levels; got {len(v)}. "
                             "Add levels, e.g. 1.0, 0.1, 0.01")
        return v

    @field_validator("norm_pool", "input_norm_pool")
    @classmethod
    def _odd_pool(cls, v: int) -> int:
        if v < 1 or v % 2 == 0:
            raise ValueError(f"must be an odd positive number of pixels (1, 3, 5, ...); got {v}")
        return v


@dataclass
class ContrastResult:
    """Outputs of :func:`run_contrast`.

    tables: "accuracy" (condition, contrast, accuracy, ...), "curves" (condition, c50, exponent,
    top, chance, r2), "decoding" (layer, decoding_accuracy, chance, log_contrast_r2), "rsa"
    (layer, rsa_contrast, rsa_category).
    """

    config: ContrastConfig
    tables: dict[str, pd.DataFrame]
    findings: list[Finding]
    curves: dict[str, ct.ContrastCurve]
    outdir: Path | None = None
    accuracy_measure: str = "top-1 accuracy against the labels"

    def figures(self) -> dict[str, object]:
        return {"accuracy_vs_contrast": plot_contrast_curves(self.tables["accuracy"], self.curves),
                "contrast_by_layer": plot_contrast_layers(self.tables["decoding"],
                                                          self.tables["rsa"])}

    def add_to_report(self, report) -> None:
        cfg = self.config
        sec = report.section(
            "Image contrast",
            f"Accuracy of `{cfg.model}` ({self.accuracy_measure}) at each contrast "
            "level, a Naka-Rushton fit with its contrast at half maximum (c50), where contrast is "
            "encoded, and divisive normalisation as a baseline mechanism.",
        )
        figs = self.figures()
        sec.figure(figs["accuracy_vs_contrast"],
                   "Accuracy versus contrast (log axis) with Naka-Rushton fits, for the intact "
                   "network and with divisive normalisation; dotted line = chance.")
        sec.table(self.tables["curves"], "Fitted psychometric curves (c50 = contrast at half "
                  "maximum).")
        sec.figure(figs["contrast_by_layer"],
                   "Where contrast is encoded: cross-validated linear decoding of the contrast "
                   "level (grouped by image) and RSA with a contrast model RDM, per layer.")
        sec.table(self.tables["decoding"].merge(self.tables["rsa"], on="layer"),
                  "Contrast decoding and RSA per layer.")
        if "decoding_control" in self.tables:
            sec.table(self.tables["decoding_control"],
                      f"Control: contrast decoding per layer of {cfg.control_model} on the same "
                      "images.")
        if "decoding_baseline" in self.tables:
            sec.table(self.tables["decoding_baseline"], "Baseline: the same read-out of the "
                      "images' pixel statistics (mean, RMS, Michelson, range, gradient); a layer "
                      "that does no better adds nothing the pixels do not already say.")


def run_contrast(
    config: ContrastConfig,
    outdir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    *,
    model: nn.Module | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> ContrastResult:
    """Accuracy-vs-contrast, contrast encoding per layer, divisive normalisation baseline.

    Outputs: ``contrast_accuracy``, ``contrast_curves``, ``contrast_decoding``, ``contrast_rsa``
    (Parquet + CSV), ``accuracy_vs_contrast.png``, ``contrast_by_layer.png``, ``report.html``,
    ``provenance.json``.
    Keyword overrides as in :func:`run_lesion`.
    """
    levels = list(config.contrasts)
    net = _load_model(config.model, model)
    tested = _test_set(config, net, images, labels, class_names)
    images, labels, class_names = tested.images, tested.targets, tested.class_names
    control = None
    if config.control_model:
        control = _load_model(config.control_model, None)
        resolve_layers(control, config.layers)
    out = prepare_output_dir(outdir, overwrite)
    ibc = ct.contrast_series(images, levels, config.contrast_kind)
    chance = 1.0 / tested.n_classes

    models = {"intact": net}
    models["input divisive norm"] = ct.with_input_normalization(
        net, images, pool_size=config.input_norm_pool, sigma=config.norm_sigma)
    if config.norm_layer:
        models[f"{config.norm_layer} divisive norm"] = ct.with_layer_normalization(
            net, config.norm_layer, images, pool_size=config.norm_pool, sigma=config.norm_sigma)
    acc_frames, curves = [], {}
    for name, m in track(list(models.items()), "accuracy vs contrast", enabled=progress):
        t = ct.accuracy_by_contrast(m, ibc, labels, class_names, per_class=config.per_class)
        t.insert(0, "condition", name)
        acc_frames.append(t)
        overall = t[t["class"] == "all"] if "class" in t else t
        curves[name] = ct.fit_contrast_curve(overall["contrast"], overall["accuracy"], chance)
    accuracy = pd.concat(acc_frames, ignore_index=True)

    stacked, lab, con, groups = ct.stack_contrasts(ibc, labels)
    acts = ct.layer_activations(net, config.layers, stacked, pooling=config.pooling)
    decoding = ct.contrast_decoding(acts, con, groups, n_splits=config.n_splits, seed=config.seed)
    # the baseline "encoded early" must beat: the same read-out of plain pixel statistics
    baseline = ct.contrast_decoding({PIXEL_BASELINE: ct.pixel_statistics(stacked)}, con, groups,
                                    n_splits=config.n_splits, seed=config.seed)
    keep = groups < min(config.rsa_images, len(images))
    rsa = ct.contrast_rsa({k: v[keep] for k, v in acts.items()}, con[keep], lab[keep],
                          metric=config.rsa_metric)
    tables = {"accuracy": accuracy, "curves": ct.curve_table(curves), "decoding": decoding,
              "decoding_baseline": baseline, "rsa": rsa}
    if control is not None:
        c_acts = ct.layer_activations(control, config.layers, stacked, pooling=config.pooling)
        tables["decoding_control"] = ct.contrast_decoding(
            c_acts, con, groups, n_splits=config.n_splits, seed=config.seed)
        tables["decoding_control"].insert(0, "network", config.control_model)
    result = ContrastResult(config, tables, _contrast_findings(tables, curves, chance), curves,
                            out, tested.measure)
    if control is not None:
        _add_decoding_control(result.findings, tables["decoding_control"], config.control_model)
    if tested.proxy:  # the decoding finding does not use accuracy
        name_proxy([f for f in result.findings if "decodable" not in f.claim])
    stems = {"accuracy": "contrast_accuracy", "curves": "contrast_curves",
             "decoding": "contrast_decoding", "decoding_baseline": "contrast_decoding_baseline",
             "rsa": "contrast_rsa", "decoding_control": "contrast_decoding_control"}
    for key, df in tables.items():
        write_table(df, out / stems[key])
    for name, fig in result.figures().items():
        save_figure(fig, out / f"{name}.png")
    _write_report(result, f"Image contrast: {config.model}", out)
    write_provenance(out, config=config, seed=config.seed,
                     inputs={"test_images": images, "labels": np.asarray(labels)},
                     models={config.model: weights_record(net)}
                     | ({config.control_model: weights_record(control)} if control else {}))
    return result


def informative_levels(contrast: np.ndarray, accuracy: np.ndarray, chance: float,
                       margin: float = 0.2, below_ceiling: float = 0.02) -> list[float]:
    """Contrast levels whose accuracy lies between chance + ``margin`` and the ceiling (the best
    accuracy) minus ``below_ceiling``: the levels where a lesion's effect can show at all."""
    acc = np.asarray(accuracy, dtype=float)
    ceiling = float(acc.max())
    keep = (acc >= chance + margin) & (acc <= ceiling - below_ceiling)
    return sorted(float(c) for c in np.asarray(contrast, dtype=float)[keep])


def _add_decoding_control(findings, dec: pd.DataFrame, name: str) -> None:
    """The control network's decoding beside the 'contrast is encoded early' finding."""
    first, last = dec.iloc[0], dec.iloc[-1]
    text = (f"{name}: {first['layer']} {first['decoding_accuracy']:.3f} (chance "
            f"{first['chance']:.3f}), last layer {last['layer']} "
            f"{last['decoding_accuracy']:.3f}")
    for f in findings:
        if f.claim.startswith("Contrast is encoded early"):
            f.control = f"{f.control}; {text}" if f.control else text


def _contrast_findings(tables, curves: dict[str, ct.ContrastCurve], chance: float):
    acc = tables["accuracy"]
    intact = acc[(acc["condition"] == "intact")
                 & ((acc["class"] == "all") if "class" in acc else True)]
    hi, lo = float(intact["accuracy"].iloc[0]), float(intact["accuracy"].iloc[-1])
    c = curves["intact"]
    info = informative_levels(intact["contrast"], intact["accuracy"], chance)
    findings = [Finding(
        claim="Recognition accuracy falls with contrast along a psychometric (sigmoid) curve.",
        reproduced=bool(hi - lo > 0.2 and c.r2 > 0.9),
        numbers=(f"accuracy {hi:.3f} at {100 * intact['contrast'].max():g}% vs {lo:.3f} at "
                 f"{100 * intact['contrast'].min():g}% (chance {chance:.2f}); Naka-Rushton c50 = "
                 f"{100 * c.c50:.2g}%, exponent {c.exponent:.2g}, R² = {c.r2:.3f}."),
        analysis="contrast",
        evidence="in-silico",
        criterion="Accuracy falls by more than 0.2 from the highest to the lowest contrast and "
                  "a Naka-Rushton curve fits with R² > 0.9.",
        control=(f"chance {chance:.2f}; {len(info)} level(s) between chance + 0.2 and the "
                 f"ceiling ({_pct(info) or 'none'}): the levels that can show a graded effect."),
    )]
    base = tables["decoding_baseline"]
    layers = tables["decoding"]
    first = layers.iloc[0]
    deeper = layers.iloc[1:]
    best = layers.loc[layers["decoding_accuracy"].idxmax()]
    pix = float(base["decoding_accuracy"].iloc[0]) if len(base) else np.nan
    first_best = bool(len(deeper) == 0 or first["decoding_accuracy"]
                      >= deeper["decoding_accuracy"].max() - 1e-9)
    beats_pixels = bool(first["decoding_accuracy"] > pix)
    findings.append(Finding(
        claim="Contrast is encoded early: the first layer decodes the contrast level at least as "
              "well as the deeper layers, or better than the image's own pixel statistics.",
        reproduced=bool(first["decoding_accuracy"] > 2 * first["chance"]
                        and (first_best or beats_pixels)),
        numbers=(f"{first['layer']}: {first['decoding_accuracy']:.3f} (chance "
                 f"{first['chance']:.3f}); best layer {best['layer']} "
                 f"{best['decoding_accuracy']:.3f}; last layer {layers.iloc[-1]['layer']} "
                 f"{layers.iloc[-1]['decoding_accuracy']:.3f}."),
        analysis="contrast",
        evidence="in-silico",
        criterion="First-layer decoding exceeds twice chance and either is at least the best "
                  "deeper layer's or beats the same read-out of pixel statistics.",
        control=(f"pixel-statistics baseline (mean, RMS, Michelson, range, gradient): {pix:.3f}; "
                 "first layer " + ("matches or beats every deeper layer" if first_best
                                   else "is below the best deeper layer") + ", "
                 f"{'beats' if beats_pixels else 'does not beat'} the baseline."),
    ))
    norm = [k for k in curves if k.startswith("input")]
    if norm:
        cn = curves[norm[0]]
        findings.append(Finding(
            claim="Mechanism check, not a published finding: divisive (contrast) normalisation "
                  "of the input lowers the contrast at half maximum. It divides out the "
                  "manipulation itself, so it is expected to pass.",
            reproduced=bool(cn.c50 < c.c50),
            numbers=f"c50 {100 * c.c50:.2g}% intact vs {100 * cn.c50:.2g}% with input "
                    "normalisation; " + ", ".join(
                        f"{k}: c50 {100 * v.c50:.2g}%, top {v.top:.2f}"
                        + (" (a step between two levels: c50 only bracketed)" if v.steep else "")
                        for k, v in curves.items())
                    + " (the fixed stage, not trained with the network, may lower the top).",
            analysis="contrast",
            evidence="in-silico",
            criterion="c50 with input normalisation is lower than intact.",
            control=f"the intact network: c50 {100 * c.c50:.2g}%, top {c.top:.2f}.",
        ))
    return findings


def plot_contrast_curves(accuracy: pd.DataFrame, curves: dict[str, ct.ContrastCurve]):
    """Accuracy vs contrast (log x) per condition with the fitted curves and c50 markers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    acc = accuracy[accuracy["class"] == "all"] if "class" in accuracy else accuracy
    grid = np.logspace(np.log10(acc["contrast"].min()), 0, 200)
    for i, (name, curve) in enumerate(curves.items()):
        d = acc[acc["condition"] == name]
        color = f"C{i}"
        ax.plot(d["contrast"], d["accuracy"], "o", color=color, label=f"{name} (c50 "
                f"{100 * curve.c50:.2g}%)")
        ax.plot(grid, curve(grid), "-", color=color, lw=1.2)
        ax.axvline(curve.c50, color=color, ls="--", lw=0.7)
    chance = next(iter(curves.values())).chance
    ax.axhline(chance, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("contrast")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_contrast_layers(decoding: pd.DataFrame, rsa: pd.DataFrame):
    """Decoding accuracy and contrast-RSA per layer (two panels)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    x = np.arange(len(decoding))
    axes[0].plot(x, decoding["decoding_accuracy"], "o-", label="contrast level (accuracy)")
    axes[0].plot(x, decoding["chance"], ":", color="grey", label="chance")
    axes[0].plot(x, decoding["log_contrast_r2"].clip(lower=0), "s--",
                 label="log contrast (R², < 0 shown as 0)")
    axes[0].set_xticks(x, decoding["layer"], rotation=45)
    axes[0].set_ylabel("cross-validated read-out")
    axes[0].legend(fontsize=7)
    axes[1].plot(x, rsa["rsa_contrast"], "o-", label="contrast model")
    axes[1].plot(x, rsa["rsa_category"], "s--", label="category model")
    axes[1].axhline(0, color="grey", lw=0.7)
    axes[1].set_xticks(x, rsa["layer"], rotation=45)
    axes[1].set_ylabel(f"RSA ({rsa['method'].iloc[0]})")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig

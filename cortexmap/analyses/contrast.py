"""Image contrast (Akbarinia & Gegenfurtner, Vision Research 2020): accuracy-vs-contrast curve
with its contrast at half maximum, where contrast is encoded (linear decoding and RSA per
layer), and divisive normalisation of the input or of a layer as a baseline mechanism.

It follows the analysis contract (:mod:`cortexmap.analyses.base`); the science (contrast
curves, decoding, normalisation) lives in :mod:`cortexmap.probes.contrast`, the network and
test set are prepared as for the lesion analysis (:mod:`cortexmap.analyses.classification`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, field_validator
from torch import nn

from cortexmap.analyses.base import Count, ModelSpec, PatternMetric, Seed, write_outputs
from cortexmap.analyses.classification import (
    ZOO_CONV_LAYERS,
    TestImages,
    informative_levels,
    load_network,
    pct,
    prepare_test,
)
from cortexmap.models import resolve_layers
from cortexmap.models.weights import weights_record
from cortexmap.probes import contrast as ct
from cortexmap.probes.testset import TestSetFields, name_proxy
from cortexmap.report import Finding
from cortexmap.utils.io import prepare_output_dir
from cortexmap.utils.progress import track

PIXEL_BASELINE = "pixel statistics"  # the baseline decoding table's one row


class ContrastConfig(TestSetFields):
    """Settings of :func:`run_contrast`.

    model / contrasts / contrast_kind / n_images / seed / image_size / per_class: as in
    :class:`~cortexmap.analyses.lesion.LesionConfig`; layers: layers for decoding and RSA;
    pooling: how a layer's map becomes features (spatial "mean" by default); n_splits:
    cross-validation folds (grouped by image); rsa_images: images used for the RSA (x contrast
    levels = conditions); rsa_metric: RDM distance (default Euclidean: contrast changes
    magnitude, which correlation ignores);
    norm_layer: layer followed by divisive normalisation (None = only the input stage);
    norm_pool / input_norm_pool: normalisation pool sizes (odd, pixels of the map / image);
    norm_sigma: semi-saturation constant as a fraction of the typical full-contrast energy.
    test_images / test_labels / class_names / accuracy: as in
    :class:`~cortexmap.analyses.lesion.LesionConfig`.
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
    Keyword overrides as in :func:`cortexmap.analyses.lesion.run_lesion`.
    """
    levels = list(config.contrasts)
    net, tested = prepare_test(config, model, images, labels, class_names)
    images, labels, class_names = tested.images, tested.targets, tested.class_names
    control = None
    if config.control_model:
        control = load_network(config.control_model)
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
    write_outputs(result, out, f"Image contrast: {config.model}", table_files=stems,
                  findings=False,
                  figures={f"{name}.png": fig for name, fig in result.figures().items()},
                  inputs={"test_images": images, "labels": np.asarray(labels)},
                  models={config.model: weights_record(net)}
                  | ({config.control_model: weights_record(control)} if control else {}))
    return result


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
                 f"ceiling ({pct(info) or 'none'}): the levels that can show a graded effect."),
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

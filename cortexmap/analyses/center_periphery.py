"""The center–periphery analysis (Mohsenzadeh et al., Sci Rep 2020): config, run, findings,
figures.

Per convolutional layer: receptive fields of every feature-map position, a background
selectivity index from object-only / background-only renderings, two unit groups, their RDMs,
and the unit-group x region RSA table with the crossover interaction, against a phantom brain
(planted crossover, or a "same"/"null" control) or a dataset folder. The science (unit groups,
background selectivity, crossover RSA) lives in :mod:`cortexmap.probes.center_periphery`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from cortexmap.analyses.base import (
    AnalysisConfig,
    CompareMethod,
    PatternMetric,
    Seed,
    write_outputs,
)
from cortexmap.brain import make_phantom
from cortexmap.brain.source import BrainDataset, resolve_brain
from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, load
from cortexmap.models.layers import default_conv_layers, spatial_layers
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.untrained import untrained_copy
from cortexmap.probes.center_periphery import (
    GROUPS,
    SELECTIVE_GROUPS,
    CrossoverStats,
    UnitGroups,
    as_subject_rdms,
    background_selectivity,
    check_masks,
    crossover_interaction,
    crossover_rsa,
    object_coverage_per_image,
    region_means,
    select_groups,
    split_foreground,
)
from cortexmap.probes.center_periphery_control import bsi_relation, ci, relation_table
from cortexmap.probes.receptive_field import ReceptiveFields, receptive_fields
from cortexmap.report import Finding
from cortexmap.report.figures import figure_png
from cortexmap.rsa import (
    RDMs,
    bootstrap_conditions,
    compare,
    compute_rdms,
    fdr,
)
from cortexmap.stimuli import load_stimuli
from cortexmap.utils.io import prepare_output_dir, safe_filenames
from cortexmap.utils.progress import track
from cortexmap.utils.validation import check_conditions


class CenterPeripheryConfig(AnalysisConfig):
    """Settings of :func:`run_center_periphery` (defaults: zoo AlexNet, bundled images, phantom).

    Model and stimuli
        model / weights / arch: ``cortexmap.models.load`` spec. layers: convolutional layers to
        analyse (default: every layer with a feature map). stimuli: "bundled" (16 photographs
        with masks) or an image folder (``masks_dir`` with one mask per image). image_size:
        size the bundled images are rendered at (they are resized to the model input anyway).
    Unit groups
        groups: (group matched to foveal regions, group matched to peripheral regions), from
        central, peripheral, background, object. central_radius / peripheral_radius: receptive
        field eccentricity thresholds (fraction of half the image side). selection, threshold,
        top_fraction: how background/object-selective units are chosen. exclusive, equal_sizes:
        see :func:`select_groups`. fill: what replaces the removed part of each rendering.
        rf_method: receptive fields "auto" | "analytic" | "gradient".
    RSA
        rdm_metric (model and brain RDMs), compare_method, n_perm, n_boot, bootstrap
        ("conditions" | "subjects"), alpha, seed.
    Brain
        brain: "phantom" or a dataset folder (``cortexmap.brain.load_dataset`` layout); atlas /
        atlas_table: ROI label image and its names (both or neither; default: ``atlas.nii.gz``
        / ``atlas.tsv`` in the dataset folder; see :func:`cortexmap.brain.resolve_brain`).
        foveal_region / peripheral_region: ROI names.
        Phantom only: phantom ("crossover" plants the centre-/background-driven geometries,
        "same" plants the whole-image geometry in both regions, "null" plants nothing),
        phantom_geometry ("images", the default: the pixel geometry of the object-only images
        in the foveal region and of the background-only images in the peripheral one -- a
        hypothesis brain that no network built, so the crossover is an in-silico test of the
        network; "groups": the RDMs of phantom_layer's own two unit groups; "masks": that
        layer's responses to object-only vs background-only renderings; "aperture": centre
        disk vs surround -- these three plant the analysed network itself, so the crossover
        only checks that the method recovers what was planted), phantom_layer (default: the
        middle analysed layer), phantom_subjects, phantom_runs, phantom_snr,
        phantom_resolution_mm.
    Control
        untrained_control: run every statistic again on an untrained copy of the network (same
        architecture, re-initialised with seed + 1); the in-silico findings need trained >
        untrained with a bootstrap CI of the difference above 0.
    """

    model: str = "zoo:alexnet_sup_s0"
    weights: str | None = None
    arch: str | None = None
    layers: list[str] | None = None
    stimuli: str = "bundled"
    masks_dir: str | None = None
    image_size: int = 128
    batch_size: int = Field(32, ge=1)

    groups: tuple[str, str] = ("central", "background")
    central_radius: float = Field(0.35, gt=0)
    peripheral_radius: float | None = None
    selection: Literal["threshold", "top_fraction"] = "top_fraction"
    threshold: float = 0.2
    top_fraction: float = Field(0.25, gt=0, le=1)
    exclusive: bool = True
    equal_sizes: bool = True
    fill: Literal["gray", "mean"] = "gray"
    rf_method: Literal["auto", "analytic", "gradient"] = "auto"

    rdm_metric: PatternMetric = "correlation"
    compare_method: CompareMethod = "spearman"
    n_perm: int = Field(1000, ge=1)
    n_boot: int = Field(1000, ge=1)
    bootstrap: Literal["conditions", "subjects"] = "conditions"
    alpha: float = Field(0.05, gt=0, lt=1)
    seed: Seed = 0

    brain: str = "phantom"
    atlas: str | None = None
    atlas_table: str | None = None
    foveal_region: str = "fusiform"
    peripheral_region: str = "parahippocampal"
    phantom: Literal["crossover", "same", "null"] = "crossover"
    phantom_geometry: Literal["images", "groups", "masks", "aperture"] = "images"
    phantom_layer: str | None = None
    phantom_subjects: int = Field(4, ge=1)
    phantom_runs: int = Field(2, ge=1)
    phantom_snr: float = Field(0.5, ge=0)
    phantom_resolution_mm: Literal[2, 3] = 3
    untrained_control: bool = True

    @field_validator("groups")
    @classmethod
    def _two_known_groups(cls, v: tuple[str, str]) -> tuple[str, str]:
        if len(set(v)) != 2 or any(g not in GROUPS for g in v):
            raise ValueError(f"groups must be two different names from {GROUPS}; got {v}")
        return v


@dataclass
class CenterPeripheryResult:
    """What :func:`run_center_periphery` produced.

    tables: "crossover" (layer x group x region: r, r_sem, p_perm, noise ceilings),
        "interaction" (per layer: interaction, bootstrap CI, p-values, significant, FDR q),
        "groups" (per layer and group: size, mean eccentricity, mean BSI, criterion),
        "receptive_fields" (per layer and position: centre, size, eccentricity).
    findings: published claims checked by this run.
    groups: layer -> UnitGroups. stats: layer -> CrossoverStats.
    config: the settings used. outdir: where files were written.
    """

    tables: dict[str, pd.DataFrame]
    findings: list[Finding]
    groups: dict[str, UnitGroups]
    stats: dict[str, CrossoverStats]
    config: CenterPeripheryConfig
    outdir: Path | None = None
    _pngs: dict[str, bytes] | None = field(default=None, repr=False)

    def figure_pngs(self) -> dict[str, bytes]:
        """Both figures rendered once as PNG bytes: {"figure_layers": ..., "figure_layout": ...}."""
        if self._pngs is None:
            self._pngs = {"figure_layers": figure_png(self.figure_layers()),
                          "figure_layout": figure_png(self.figure_layout())}
        return self._pngs

    def figure_layers(self):
        """Figure: the four RSA correlations and the crossover interaction across layers."""
        return figure_layers(self.tables["crossover"], self.tables["interaction"], self.config)

    def figure_layout(self):
        """Figure: where each group's units sit on each layer's feature map, and the mean BSI."""
        return figure_layout(self.groups, self.config)

    def add_to_report(self, report) -> None:
        """Add a "Center-periphery organization" section (text, figures, tables).

        The findings are not added here (``report.findings(result.findings)``), so a combined
        report that collects every analysis's findings lists each once.
        """
        cfg = self.config
        g1, g2 = cfg.groups
        sec = report.section(
            "Center-periphery organization",
            intro=(
                "Mohsenzadeh et al. (Sci Rep 2020): units whose receptive fields cover the image "
                f"centre ({g1}) should match foveal brain regions and background-selective units "
                f"({g2}) peripheral ones. Model `{cfg.model}`, stimuli `{cfg.stimuli}`, brain "
                f"`{cfg.brain}`{' (' + cfg.phantom + ' phantom)' if cfg.brain == 'phantom' else ''}"
                f"; foveal ROI `{cfg.foveal_region}`, peripheral ROI `{cfg.peripheral_region}`."
            ),
        )
        sec.text(
            "Crossover interaction I = (r[g1, foveal] + r[g2, peripheral]) - "
            "(r[g1, peripheral] + r[g2, foveal]); I > 0 with a bootstrap CI above zero "
            f"reproduces the claim. RDMs: {cfg.rdm_metric} distance, compared by "
            f"{cfg.compare_method}; {cfg.n_perm} condition permutations, {cfg.n_boot} "
            f"{cfg.bootstrap} bootstrap samples."
        )
        pngs = self.figure_pngs()
        sec.image(pngs["figure_layers"], "RSA correlation of each unit group with each region "
                  "across layers (solid: the hypothesised pairing; bands: each region's noise "
                  "ceiling) and the crossover interaction with its "
                  f"{100 * (1 - cfg.alpha):.0f}% bootstrap CI.")
        sec.image(pngs["figure_layout"], "Spatial layout: mean background selectivity index per "
                  "feature-map position and the fraction of channels in each group; the dashed "
                  "line is where the RF eccentricity equals the central radius.")
        sec.table(self.tables["interaction"], "Crossover interaction per layer.")
        sec.table(self.tables["crossover"], "Unit group x region RSA per layer.")
        sec.table(self.tables["groups"], "Unit groups per layer.")


def _needs_masks(cfg: CenterPeripheryConfig, region_given: bool = False) -> bool:
    return any(g in SELECTIVE_GROUPS for g in cfg.groups) or (
        not region_given and cfg.brain == "phantom" and cfg.phantom_geometry in ("masks", "images")
        and cfg.phantom == "crossover"
    )


def evidence_of(cfg: CenterPeripheryConfig) -> str:
    """Evidence class of the crossover: a phantom planted from the analysed network itself only
    checks the method; the image-geometry phantom tests the network; a dataset is real data."""
    if cfg.brain != "phantom":
        return "real-data"
    return "in-silico" if cfg.phantom_geometry == "images" and cfg.phantom == "crossover" else (
        "method-check")


def _aperture_split(images: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre disk (eccentricity <= radius) and surround renderings, rest filled with gray."""
    h, w = images.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w]
    ecc = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / (min(h, w) / 2)
    disk = np.broadcast_to(ecc <= radius, images.shape[:3])
    return split_foreground(images, disk, fill="gray")


def _phantom_brain(cfg, stim, acts: dict, groups: dict, outdir: Path, layers: list[str],
                   progress: bool, renderings: dict[str, np.ndarray]) -> dict[str, RDMs]:
    """Write the phantom dataset and return its ROI RDMs (region -> subject RDMs).

    What is planted (``phantom="crossover"``), from ``phantom_layer``:
    ``phantom_geometry="groups"``: the RDMs of the layer's two unit groups (foveal <- first group,
    e.g. central units; peripheral <- second, e.g. background-selective units); "masks": the
    layer's responses to object-only (foveal) and background-only (peripheral) renderings;
    "aperture": responses to a centre disk (foveal) and to its surround (peripheral);
    "images": no network at all -- the pixels of the object-only (foveal) and background-only
    (peripheral) renderings.
    """

    layer = cfg.phantom_layer or layers[len(layers) // 2]
    if layer not in acts["full"]:
        raise CortexmapError(
            f"phantom_layer {layer!r} is not among the analysed layers {layers}; add it to "
            "layers or choose one of them."
        )
    full = acts["full"][layer]
    if cfg.phantom == "crossover" and cfg.phantom_geometry == "images":
        pats = [renderings[k].reshape(len(full), -1) for k in ("object", "background")]
        names = ["image:object", "image:background"]
    elif cfg.phantom == "crossover":
        if cfg.phantom_geometry == "groups":
            ug = groups[layer]
            pats = [ug.patterns(full, g) for g in cfg.groups]
            names = [f"{layer}:{g}" for g in cfg.groups]
        else:
            keys = (("object", "background") if cfg.phantom_geometry == "masks"
                    else ("disk", "surround"))
            pats = [acts[k][layer].reshape(len(full), -1) for k in keys]
            names = [f"{layer}:{k}" for k in keys]
    else:  # "same": the whole-image geometry in both regions; "null": planted with snr = 0
        pats = [full.reshape(len(full), -1)] * 2
        names = [f"{layer}:all"] * 2
    regions = (cfg.foveal_region, cfg.peripheral_region)
    planted = {
        r: compute_rdms(p, metric="correlation", names=[n], conditions=stim.ids)
        for r, p, n in zip(regions, pats, names, strict=True)
    }
    ds = make_phantom(
        planted, outdir / "phantom", n_subjects=cfg.phantom_subjects, n_runs=cfg.phantom_runs,
        snr=0.0 if cfg.phantom == "null" else cfg.phantom_snr,
        resolution_mm=cfg.phantom_resolution_mm, conditions=list(stim.ids),
        seed=cfg.seed, overwrite=True, progress=progress,
    )
    return BrainDataset.of_phantom(ds).load().rdms(regions, cfg.rdm_metric, list(stim.ids))


def _unit_groups(cfg: CenterPeripheryConfig, rfs: dict[str, ReceptiveFields], acts: dict,
                 coverage: dict[str, np.ndarray] | None) -> dict[str, UnitGroups]:
    """Unit groups of every layer from its receptive fields and activations."""
    groups = {}
    for layer, rf in rfs.items():
        bsi = background_selectivity(acts["object"][layer], acts["background"][layer]) if (
            coverage is not None) else None
        groups[layer] = select_groups(
            rf, acts["full"][layer].shape[1], bsi, cfg.groups, cfg.central_radius,
            cfg.peripheral_radius, cfg.selection, cfg.threshold, cfg.top_fraction,
            cfg.exclusive, cfg.equal_sizes, cfg.seed,
        )
        if coverage is not None:
            groups[layer].object_coverage = coverage[layer].mean(0)
    return groups


def _untrained_control(cfg, model, layers, renderings, rfs, coverage, acts, trained_rdms: RDMs,
                       region: dict[str, RDMs], ids, progress: bool) -> dict[str, pd.DataFrame]:
    """Every statistic again on an untrained copy; tables "untrained_interaction" (per layer:
    the copy's crossover and the trained - untrained difference with a paired condition
    bootstrap CI) and "bsi_relation" (see :func:`center_periphery_control.relation_table`)."""
    twin = untrained_copy(model, seed=cfg.seed + 1)
    ex = Extractor(twin, layers, pooling="none", batch_size=cfg.batch_size)
    tacts = {k: ex.extract(v, progress=False) for k, v in renderings.items()
             if k in ("full", "object", "background")}
    tgroups = _unit_groups(cfg, rfs, tacts, coverage)
    twin_rdms = []
    for layer in layers:
        pats = [tgroups[layer].patterns(tacts["full"][layer], g) for g in cfg.groups]
        r = compute_rdms(pats, metric=cfg.rdm_metric, names=list(cfg.groups), conditions=ids)
        twin_rdms.append(RDMs(r.vectors, r.n_conditions, [f"untrained:{layer}:{g}"
                                                           for g in cfg.groups], r.metric, ids))
    regs = [as_subject_rdms(region[r], r) for r in (cfg.foveal_region, cfg.peripheral_region)]
    n_sub = len(regs[0])
    data = RDMs(np.concatenate([regs[0].vectors, regs[1].vectors]), regs[0].n_conditions,
                [f"{k}:{i}" for k in range(2) for i in range(n_sub)])
    both = RDMs.concat([trained_rdms, *twin_rdms])
    nl = len(layers)
    obs = crossover_interaction(region_means(compare(both, data, method=cfg.compare_method), n_sub)
                       .reshape(2, nl, 2, 2))
    bs = bootstrap_conditions(both, data, method=cfg.compare_method, n_boot=cfg.n_boot,
                              seed=cfg.seed + 1)
    boot = crossover_interaction(region_means(bs.samples, n_sub).reshape(-1, 2, nl, 2, 2))
    rows = []
    for j, layer in enumerate(layers):
        lo, hi = ci(boot[:, 0, j] - boot[:, 1, j], cfg.alpha)
        rows.append({"layer": layer, "trained": float(obs[0, j]), "untrained": float(obs[1, j]),
                     "difference": float(obs[0, j] - obs[1, j]), "ci_low": lo, "ci_high": hi})
    tables = {"untrained_interaction": pd.DataFrame(rows)}
    if coverage is not None:
        ecc = {layer: rfs[layer].eccentricity() for layer in layers}
        n_boot = min(cfg.n_boot, 500)  # a few hundred resamples pin a 95 % CI
        rel = [bsi_relation({la: a["object"][la] for la in layers},
                            {la: a["background"][la] for la in layers}, ecc, coverage,
                            n_boot=n_boot, seed=cfg.seed + 2) for a in (acts, tacts)]
        tables["bsi_relation"] = relation_table(layers, rel[0], rel[1], cfg.alpha)
    return tables


def run_center_periphery(
    config: CenterPeripheryConfig | None = None,
    outdir: str | os.PathLike = "center_periphery",
    overwrite: bool = False,
    progress: bool = True,
    *,
    model=None,
    stimuli=None,
    region_rdms: dict[str, RDMs] | None = None,
) -> CenterPeripheryResult:
    """Run the center-periphery analysis end to end and write its outputs to ``outdir``.

    The keyword-only overrides let the Python API use objects instead of config specs:
    ``model`` (an ``nn.Module``, instead of ``config.model``), ``stimuli`` (a
    ``cortexmap.stimuli.StimulusSet``, instead of ``config.stimuli``) and ``region_rdms``
    ({foveal_region: subject RDMs, peripheral_region: subject RDMs}, instead of
    ``config.brain``; e.g. from ``cortexmap.brain.roi_rdms``).

    Writes: tables ``crossover``, ``interaction``, ``groups``, ``receptive_fields``,
    ``untrained_interaction`` and ``bsi_relation`` (the untrained-copy control), ``findings``
    (Parquet + CSV), ``group_rdms.npz``, ``region_rdms_<roi>.npz``, ``figure_layers.png``,
    ``figure_layout.png``, ``report.html``, ``provenance.json`` (and ``phantom/`` when the
    brain is simulated).
    """
    import torch

    cfg = config or CenterPeripheryConfig()
    torch.manual_seed(cfg.seed)
    model_given = model is not None
    model = load(model) if model_given else load(cfg.model, weights=cfg.weights, arch=cfg.arch)
    stim = stimuli if stimuli is not None else load_stimuli(cfg.stimuli, cfg.image_size,
                                                            masks_dir=cfg.masks_dir)
    # record what was actually used when objects replace the config's specs
    updates = {}
    if model_given:
        updates["model"] = str(getattr(model, "cortexmap_name", type(model).__name__))
    if stimuli is not None:
        updates["stimuli"] = f"<StimulusSet {getattr(stim, 'name', '')}: {len(stim)} images>"
    if region_rdms is not None:
        updates["brain"] = f"<ROI RDMs: {', '.join(region_rdms)}>"
    cfg = cfg.model_copy(update=updates)
    check_conditions(len(stim), "The stimulus set")
    size = input_size_of(model)
    conv = spatial_layers(model, size)
    layers = list(cfg.layers) if cfg.layers else default_conv_layers(model, size)
    for layer in layers:
        if layer not in conv:
            # receptive_fields names the problem (unknown or not convolutional) precisely
            receptive_fields(model, layer, size, method="analytic")
    masks = check_masks(stim.images, stim.masks, stim.ids) if _needs_masks(
        cfg, region_rdms is not None) else None
    regions = [cfg.foveal_region, cfg.peripheral_region]
    dataset = resolve_brain(cfg, regions=regions) if region_rdms is None else None
    if region_rdms is None and cfg.brain == "phantom" and cfg.phantom_layer is not None and (
            cfg.phantom_layer not in layers):
        raise CortexmapError(
            f"phantom_layer {cfg.phantom_layer!r} is not among the analysed layers {layers}; "
            "add it to layers or choose one of them."
        )
    out = prepare_output_dir(outdir, overwrite)  # after the input checks: no empty folder left

    extractor = Extractor(model, layers, pooling="none", batch_size=cfg.batch_size)
    renderings = {"full": stim.images}
    if masks is not None:
        renderings["object"], renderings["background"] = split_foreground(
            stim.images, masks, cfg.fill)
    if region_rdms is None and cfg.brain == "phantom" and cfg.phantom_geometry == "aperture":
        renderings["disk"], renderings["surround"] = _aperture_split(
            stim.images, cfg.central_radius)
    acts: dict[str, dict[str, np.ndarray]] = {
        k: extractor.extract(v, progress=progress) for k, v in renderings.items()
    }

    rfs = {layer: receptive_fields(model, layer, size, method=cfg.rf_method, seed=cfg.seed)
           for layer in track(layers, "receptive fields per layer", enabled=progress)}
    coverage = ({layer: object_coverage_per_image(rf, masks) for layer, rf in rfs.items()}
                if masks is not None else None)
    groups = _unit_groups(cfg, rfs, acts, coverage)
    rf_tables = [rf.to_frame() for rf in rfs.values()]

    if region_rdms is not None:
        region = dict(region_rdms)
    elif cfg.brain == "phantom":
        region = _phantom_brain(cfg, stim, acts, groups, out, layers, progress, renderings)
    else:
        region = dataset.load(conditions=stim.ids).rdms(regions, cfg.rdm_metric, list(stim.ids))

    stats: dict[str, CrossoverStats] = {}
    cross_rows, inter_rows, all_group_rdms = [], [], []
    for layer in track(layers, "crossover RSA per layer", enabled=progress):
        ug = groups[layer]
        pats = [ug.patterns(acts["full"][layer], g) for g in cfg.groups]
        grdm = compute_rdms(pats, metric=cfg.rdm_metric, names=list(cfg.groups),
                            conditions=stim.ids)
        all_group_rdms.append(RDMs(grdm.vectors, grdm.n_conditions,
                                   [f"{layer}:{g}" for g in cfg.groups], grdm.metric, stim.ids))
        s = crossover_rsa(
            grdm, region, (cfg.foveal_region, cfg.peripheral_region), cfg.compare_method,
            cfg.n_perm, cfg.n_boot, cfg.bootstrap, cfg.alpha, cfg.seed,
        )
        stats[layer] = s
        sizes = ug.sizes()
        cross_rows.append(s.table.assign(
            layer=layer, n_units=[sizes[g] for g in s.table["group"]]))
        inter_rows.append({"layer": layer, **s.interaction,
                           **{f"n_{g}": sizes[g] for g in cfg.groups}})
    twin = None
    if cfg.untrained_control:
        twin = _untrained_control(cfg, model, layers, renderings, rfs, coverage, acts,
                                  RDMs.concat(all_group_rdms), region, stim.ids, progress)
    crossover = pd.concat(cross_rows, ignore_index=True)
    crossover = crossover[["layer"] + [c for c in crossover.columns if c != "layer"]]
    interaction = pd.DataFrame(inter_rows)
    interaction["q_fdr"] = np.asarray(fdr(interaction["p_perm"].to_numpy()))
    tables = {
        "crossover": crossover,
        "interaction": interaction,
        **(twin or {}),
        "groups": pd.concat([g.summary() for g in groups.values()], ignore_index=True),
        "receptive_fields": pd.concat(rf_tables, ignore_index=True),
    }
    result = CenterPeripheryResult(tables, [], groups, stats, cfg, out)
    result.findings = _findings(result)

    names = safe_filenames(list(region), "region")
    files = {"group_rdms.npz": RDMs.concat(all_group_rdms).save,
             **{f"region_rdms_{names[r]}.npz": rd.save for r, rd in region.items()},
             **{f"{name}.png": png for name, png in result.figure_pngs().items()}}
    write_outputs(result, out, "cortexmap: center-periphery organization", files=files,
                  inputs={"stimuli": stim.images,
                          **({"masks": masks} if masks is not None else {})})
    return result


def _findings(result: CenterPeripheryResult) -> list[Finding]:
    return [_crossover_finding(result)] + _bsi_findings(result)


def _crossover_finding(result: CenterPeripheryResult) -> Finding:
    cfg = result.config
    inter = result.tables["interaction"]
    g1, g2 = cfg.groups
    evidence = evidence_of(cfg)
    # a layer counts when its bootstrap CI lies above 0 and its permutation p survives FDR
    # across the layers tested (several layers = several chances)
    sig = inter[inter["significant"] & (inter["interaction"] > 0) & (inter["q_fdr"] < cfg.alpha)]
    best = inter.loc[inter["interaction"].idxmax()]
    nums = "; ".join(
        f"{r.layer}: I = {r.interaction:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}], "
        f"p_perm = {r.p_perm:.3g}" for r in inter.itertuples()
    )
    numbers = (f"{len(sig)}/{len(inter)} layers with I > 0, CI above 0 and FDR q < "
               f"{cfg.alpha:g} (best {best.layer}: {best.interaction:+.3f}). " + nums)
    if evidence == "method-check":
        planted = cfg.phantom_layer or list(result.groups)[len(result.groups) // 2]
        what = {"groups": f"the RDMs of {planted}'s {g1} and {g2} units",
                "masks": f"{planted}'s responses to object-only and background-only images",
                "aperture": f"{planted}'s responses to a centre disk and its surround"}
        planted_what = ("nothing (null phantom)" if cfg.phantom == "null" else
                        f"the whole-image geometry of {planted} in both regions"
                        if cfg.phantom == "same" else what[cfg.phantom_geometry])
        return Finding(
            claim=(f"The crossover RSA recovers the phantom's planted geometry ({planted_what}, "
                   f"planted in {cfg.foveal_region} / {cfg.peripheral_region})."),
            reproduced=bool(planted in set(sig["layer"])) and cfg.phantom == "crossover",
            numbers=numbers, analysis="center_periphery", evidence="method-check",
            criterion=(f"The planted layer {planted} has I > 0 with its bootstrap CI above 0 "
                       f"and FDR q < {cfg.alpha:g} (a null or same-geometry phantom must not)."),
        )
    twin = result.tables.get("untrained_interaction")
    ok_layers = set(sig["layer"])
    control = "not run (untrained_control=False)"
    if twin is not None:
        ahead = twin[twin["ci_low"] > 0]
        ok_layers &= set(ahead["layer"])
        control = "untrained copy: " + "; ".join(
            f"{r.layer}: I = {r.untrained:+.3f}, trained - untrained {r.difference:+.3f} "
            f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in twin.itertuples())
    brain = ("a phantom whose foveal region carries the pixel geometry of the object-only "
             "images and whose peripheral region that of the background-only images"
             if evidence == "in-silico" else f"the brain data in {cfg.brain}")
    return Finding(
        claim=(f"{g1.capitalize()} units match the foveal region ({cfg.foveal_region}) and {g2} "
               f"units the peripheral region ({cfg.peripheral_region}) -- a positive crossover "
               f"interaction -- more than in an untrained copy of the network (brain: {brain})."),
        reproduced=bool(ok_layers) and twin is not None,
        numbers=numbers, analysis="center_periphery", evidence=evidence,
        criterion=(f"At least one layer has I > 0 with its bootstrap CI above 0 and FDR q < "
                   f"{cfg.alpha:g}, and there the trained - untrained difference of I has a "
                   "paired bootstrap CI above 0."),
        control=control,
    )


def _bsi_findings(result: CenterPeripheryResult) -> list[Finding]:
    cfg = result.config
    if "background" not in cfg.groups or any(g.selectivity is None
                                              for g in result.groups.values()):
        return []
    rel = result.tables.get("bsi_relation")
    grp = result.tables["groups"]
    if rel is None:
        rows = []
        for layer, ug in result.groups.items():
            ecc = np.broadcast_to(ug.eccentricity, ug.shape)
            ok = np.isfinite(ug.selectivity)
            rows.append(f"{layer}: {np.corrcoef(ug.selectivity[ok], ecc[ok])[0, 1]:+.2f}"
                        if ok.sum() > 2 else f"{layer}: n/a")
        numbers, control, ok = "corr(BSI, eccentricity): " + "; ".join(rows), (
            "not run (untrained_control=False)"), False
    else:
        per = rel[rel["layer"] != "mean"]
        mean = rel[rel["layer"] == "mean"].set_index("statistic")

        def fmt(col: str) -> str:
            return "; ".join(
                f"{layer}: {g.set_index('statistic').loc['raw', col]:+.2f} / "
                f"{g.set_index('statistic').loc['partial', col]:+.2f}"
                for layer, g in per.groupby("layer", sort=False))

        numbers = ("corr(BSI, eccentricity) raw / with object coverage partialled out: "
                   + fmt("trained") + ". Mean eccentricity of groups: " + "; ".join(
                       f"{r.layer}/{r.group}: {r.mean_eccentricity:.2f} (object coverage "
                       f"{r.mean_object_coverage:.2f})" for r in grp.itertuples()))
        control = ("untrained copy, raw / partial: " + fmt("untrained") + ". Mean over layers, "
                   "trained - untrained: " + "; ".join(
                       f"{stat} {mean.loc[stat, 'difference']:+.3f} "
                       f"[{mean.loc[stat, 'ci_low']:+.3f}, {mean.loc[stat, 'ci_high']:+.3f}]"
                       for stat in ("raw", "partial")))
        ok = bool((mean["ci_low"] > 0).all())
    return [Finding(
        claim=("Background-selective units lie in the periphery of the feature maps: "
               "background selectivity grows with receptive-field eccentricity, beyond what the "
               "untrained network and the objects' central position give."),
        reproduced=ok, numbers=numbers, analysis="center_periphery", evidence="in-silico",
        criterion=("Averaged over layers, corr(BSI, eccentricity) of the trained network exceeds "
                   "the untrained copy's with a 95 % image-bootstrap CI above 0, both raw and "
                   "with each receptive field's object coverage partialled out."),
        control=control,
    )]


# ============================================================================================
# Figures


def figure_layers(crossover: pd.DataFrame, interaction: pd.DataFrame,
                  config: CenterPeripheryConfig | None = None):
    """Two panels: group x region RSA correlations across layers; crossover interaction + CI."""
    import matplotlib.pyplot as plt

    layers = list(interaction["layer"])
    x = np.arange(len(layers))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.6))
    groups = list(dict.fromkeys(crossover["group"]))
    kinds = ("foveal", "peripheral")
    # colour = hypothesised partnership (group 1 ~ foveal: blue, group 2 ~ peripheral: orange);
    # solid = the hypothesised pairing, dashed = the crossed pairing
    colors = dict(zip(groups, ["tab:blue", "tab:orange"], strict=False))
    kind_colors = dict(zip(kinds, ["tab:blue", "tab:orange"], strict=True))
    for k, kind in enumerate(kinds):
        sub = crossover[crossover["region_kind"] == kind]
        nc = sub.groupby("layer", sort=False)[["nc_lower", "nc_upper"]].first().reindex(layers)
        if nc.notna().all().all():
            ax1.fill_between(x, nc["nc_lower"], nc["nc_upper"], color=kind_colors[kind],
                             alpha=0.12, lw=0, label=f"noise ceiling {sub['region'].iloc[0]}")
        for gi, g in enumerate(groups):
            row = sub[sub["group"] == g].set_index("layer").reindex(layers)
            match = gi == k
            ax1.errorbar(x, row["r"], yerr=row["r_sem"], fmt="-o" if match else "--s",
                         color=colors[g], capsize=2, ms=4,
                         label=f"{g} ~ {row['region'].iloc[0]}" + (" (match)" if match else ""))
    ax1.axhline(0, color="k", lw=0.6)
    ax1.set_xticks(x, layers, rotation=30)
    ax1.set_ylabel("RSA correlation")
    ax1.set_title("unit group x region")
    ax1.legend(fontsize=7, frameon=False, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    err = np.vstack([interaction["interaction"] - interaction["ci_low"],
                     interaction["ci_high"] - interaction["interaction"]])
    colors2 = ["tab:green" if s else "0.5" for s in interaction["significant"]]
    ax2.bar(x, interaction["interaction"], color=colors2, yerr=err, capsize=3)
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xticks(x, layers, rotation=30)
    ax2.set_ylabel("crossover interaction")
    ax2.set_title("interaction (green: CI excludes 0)")
    fig.tight_layout()
    return fig


def figure_layout(groups: dict[str, UnitGroups], config: CenterPeripheryConfig | None = None):
    """Per layer (columns): mean BSI per position (if measured), each group's channel fraction."""
    import matplotlib.pyplot as plt

    layers = list(groups)
    first = groups[layers[0]]
    has_bsi = first.selectivity is not None
    rows = (["BSI"] if has_bsi else []) + first.names
    fig, axes = plt.subplots(len(rows), len(layers), figsize=(2.1 * len(layers), 2.0 * len(rows)),
                             squeeze=False)
    for j, layer in enumerate(layers):
        ug = groups[layer]
        rf = ug.rf
        for i, row in enumerate(rows):
            ax = axes[i, j]
            if row == "BSI":
                with np.errstate(all="ignore"):
                    img = np.nanmean(ug.selectivity, axis=0)
                im = ax.imshow(img, cmap="RdBu_r", vmin=-1, vmax=1)
            else:
                im = ax.imshow(ug.layout(row), cmap="viridis", vmin=0, vmax=1)
            if rf is not None and config is not None:
                _draw_radius(ax, rf, config.central_radius)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(layer, fontsize=9)
            if j == 0:
                ax.set_ylabel(row if row == "BSI" else f"{row} units", fontsize=9)
        if j == len(layers) - 1:
            for i, row in enumerate(rows):
                fig.colorbar(axes[i, j].images[0], ax=axes[i, j], fraction=0.046,
                             label="mean BSI" if row == "BSI" else "fraction of channels")
    fig.tight_layout()
    del im
    return fig


def _draw_radius(ax, rf: ReceptiveFields, radius: float) -> None:
    """Dashed contour where the receptive-field eccentricity equals ``radius`` (grid coords)."""
    ecc = rf.eccentricity()
    if ecc.min() < radius < ecc.max() and min(ecc.shape) > 1:
        ax.contour(ecc, levels=[radius], colors="w", linewidths=1, linestyles="--")

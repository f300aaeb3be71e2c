"""Analysis 2: synthesize images that orthogonalize layer RDMs, and compare with natural images.

``run_synthesis(config, outdir)`` optimizes ``n_images`` images through a model so that the
RDMs of the chosen layers are as mutually uncorrelated as possible, then writes:

* ``images/synth_XX.png`` — the synthesized images;
* ``rdms_synthesized.npz`` / ``rdms_natural.npz`` / ``rdms_residual.npz`` (:class:`RDMs`) and
  ``rdms.parquet/.csv`` (long table of every dissimilarity);
* ``layer_correlations.parquet/.csv`` — layer-by-layer RDM correlation (Pearson and Spearman)
  for the synthesized set, the natural set and the natural set's residual RDMs;
* ``orthogonality.parquet/.csv`` — mean |off-diagonal| correlation per set (the achieved
  orthogonality), ``history.parquet/.csv`` — the optimization curve;
* with ``mapping=True``: the phantom-brain comparison of natural / synthesized / residual
  layer maps (``mapping_*.parquet/.csv``, see :mod:`cortexmap.synthesis.mapping`);
* ``report.html``, ``provenance.json`` and ``checkpoint.pt`` (resume by running again).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from cortexmap.analyses.base import DaskFields, ModelFields, Seed, StimuliSource, write_outputs
from cortexmap.errors import CortexmapError
from cortexmap.models import load
from cortexmap.models.load import weights_fingerprint
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.weights import STAGE_LAYERS
from cortexmap.report import Finding, Report
from cortexmap.rsa import PatternMetric, RDMs, compare
from cortexmap.rsa.residual import residual_rdms
from cortexmap.stimuli import load_stimuli
from cortexmap.synthesis.figures import (
    correlation_matrices,
    image_grid,
    optimization_curve,
    orthogonality_bars,
    rdm_panels,
)
from cortexmap.synthesis.mapping import compare_mappings
from cortexmap.synthesis.objective import LayerRDMObjective
from cortexmap.synthesis.optimize import checkpoint_fingerprint, synthesize
from cortexmap.synthesis.parameterization import make_parameterization
from cortexmap.synthesis.priors import PriorConfig
from cortexmap.utils.io import prepare_output_dir
from cortexmap.utils.provenance import checksum

#: Layers used when none are given, by model family (matched on the model spec).
DEFAULT_LAYERS: dict[str, list[str]] = {
    "googlenet": ["inception3a", "inception3b", "inception4a", "inception4c", "inception4e",
                  "inception5b"],
    "zoo:alexnet": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"],
    "zoo:vgg": ["block1", "block2", "block3", "fc6"],
    "zoo:resnet": ["stem", "layer1", "layer2", "layer3"],
    "zoo:vit": ["block1", "block2", "block3", "block4"],
    "alexnet": ["features.1", "features.4", "features.7", "features.9", "features.11",
                "classifier.2"],
    # real ImageNet networks: the last block of each resolution stage
    **{name: layers[1:] for name, layers in STAGE_LAYERS.items()},
}

# "Well below natural": the synthesized mean |r| must be under this fraction of the natural one.
WELL_BELOW = 0.5


class SynthesisConfig(ModelFields, DaskFields):
    """Settings of the synthesis analysis (defaults: zoo AlexNet, 16 images, 500 steps)."""

    layers: list[str] | None = Field(None, description=">= 2 layer names (default per model)")
    n_images: int = Field(16, description="number of images to synthesize (>= 3)")
    image_size: int | None = Field(None, description="synthesized image size (default: model's)")
    input_size: int | None = Field(None, description="resize images to this before the model")
    steps: int = Field(500, ge=0)
    lr: float = Field(0.05, gt=0)
    parameterization: Literal["fourier", "pixel"] = "fourier"
    decay_power: float = Field(1.0, ge=0)
    squash: Literal["sigmoid", "none"] = "sigmoid"
    jitter: int = Field(4, ge=0)
    tv_weight: float = Field(0.0, ge=0)
    range_weight: float = Field(0.0, ge=0)
    metric: PatternMetric = "correlation"
    seed: Seed = 0
    checkpoint_every: int = Field(50, ge=0)
    resume: bool = True
    device: str = Field("cpu", description="'cpu', 'cuda', or 'auto'")
    calibrate_batchnorm: bool = Field(
        False, description="recompute BatchNorm running statistics on the natural images first "
        "(for randomly initialized networks, whose default statistics let deep layers vanish)")
    natural: StimuliSource = Field("bundled", description="'bundled' or a folder of natural "
                                   "images")
    mapping: bool = Field(True, description="phantom-brain mapping of natural/synth/residual")
    phantom_snr: float = Field(2.0, gt=0, description="phantom signal SD / noise SD per voxel")
    phantom_subjects: int = Field(3, ge=1)
    phantom_resolution_mm: Literal[1, 2, 3] = 3
    searchlight_radius_mm: float = Field(9.0, gt=0)
    map_threshold: float | None = Field(
        None, description="fixed searchlight r above which a voxel joins a layer map (default: "
        "a family-wise alpha threshold from condition-permuted layer RDMs)")
    map_alpha: float = Field(0.05, gt=0, lt=1, description="family-wise alpha of layer maps")
    map_permutations: int = Field(10, ge=2, description="permuted RDMs per layer for the null")

    @field_validator("layers")
    @classmethod
    def _two_layers(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(v) < 2:
            raise ValueError(f"only one layer given ({v}); orthogonalizing needs at least 2 "
                             "layers")
        return v

    @field_validator("n_images")
    @classmethod
    def _three_images(cls, v: int) -> int:
        if v < 3:
            raise ValueError(f"n_images={v}: an RDM needs at least 3 images; use 3 or more (the "
                             "paper uses 16)")
        return v

    def fingerprint(self) -> str:
        """Hash of the settings a checkpoint depends on (steps excluded: runs can be extended).

        BatchNorm calibration changes the network the images are optimized through, so it
        and the natural images it calibrates on (their contents) are part of it.
        """
        keys = ["model", "weights", "arch", "layers", "n_images", "image_size", "input_size",
                "lr", "parameterization", "decay_power", "squash", "jitter", "tv_weight",
                "range_weight", "metric", "seed", "calibrate_batchnorm"]
        values = {k: getattr(self, k) for k in keys}
        if self.calibrate_batchnorm:
            values["natural"] = self.natural_checksum()
        blob = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def natural_checksum(self) -> str:
        """'bundled', or the SHA-256 of the natural-image folder's files."""
        if self.natural == "bundled" or not Path(self.natural).exists():
            return self.natural
        return checksum(self.natural)

    def output_settings(self) -> dict:
        """Everything that changes a finished run's outputs, besides ``steps`` (raising it
        extends a run on purpose): compared before a resumed run replaces them."""
        values = self.model_dump(mode="json", exclude=_RUN_ONLY)
        values["natural"] = self.natural_checksum()
        return values


#: Settings that change how a synthesis run executes, never what it writes.
_RUN_ONLY = {"steps", "resume", "checkpoint_every", "scheduler", "device"}


def _check_finished_outputs(out: Path, config: SynthesisConfig) -> None:
    """Refuse to replace a finished run's outputs made with other settings (not ``steps``)."""
    prov = out / "provenance.json"
    if not prov.is_file():
        return
    try:
        saved = json.loads(prov.read_text(encoding="utf-8"))
        old = {k: v for k, v in saved["config"].items() if k not in _RUN_ONLY}
        old["natural"] = saved.get("inputs", {}).get("natural", old.get("natural"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        old = None
    new = config.output_settings()
    if old != new:
        diff = sorted(k for k in new if old is None or old.get(k) != new[k])
        raise CortexmapError(
            f"{out} holds the finished results of a synthesis run with other settings "
            f"(differs in: {', '.join(diff) or 'unreadable provenance.json'}); pass --overwrite "
            "to replace them, or choose another --out."
        )


def default_layers(spec: str) -> list[str]:
    """Default layers for a model spec, or an error asking for ``layers``."""
    name = spec.lower().removesuffix(":untrained").removeprefix("imagenet:")
    for key, layers in DEFAULT_LAYERS.items():
        if name == key or name.startswith(key + "_") or name.startswith(key + "@"):
            return list(layers)
    raise CortexmapError(
        f"No default layers for model {spec!r}; pass layers (>= 2 names, e.g. --layers "
        "conv1,conv3,fc6). List valid names with `cortexmap layers MODEL`."
    )


@dataclass
class SynthesisResult:
    """Everything run_synthesis produced (also on disk in ``outdir``)."""

    config: SynthesisConfig
    outdir: Path
    layers: list[str]
    images: np.ndarray  # (n, H, W, 3) float32 in [0, 1]
    rdms: dict[str, RDMs]  # "synthesized", "natural", "residual"
    correlations: dict[str, np.ndarray]  # set -> (n_layers, n_layers) Pearson
    history: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    findings: list[Finding]
    mapping: Any = None  # cortexmap.synthesis.mapping.MappingResult
    extras: dict[str, Any] = field(default_factory=dict)

    def orthogonality(self, which: str) -> float:
        """Mean |off-diagonal| layer RDM correlation of one set."""
        t = self.tables["orthogonality"]
        return float(t.loc[t["set"] == which, "mean_abs_r"].iloc[0])

    def add_to_report(self, report: Report) -> None:
        """The synthesis section (and the mapping subsection when it ran)."""
        res = self
        cfg = res.config
        nat, syn = res.orthogonality("natural"), res.orthogonality("synthesized")
        sec = report.section(
            "Layer-orthogonalizing image synthesis",
            f"{cfg.n_images} images of {res.extras.get('image_size')} px were optimized through "
            f"`{cfg.model}` for {len(res.history)} steps ({cfg.parameterization} "
            f"parameterization, jitter {cfg.jitter} px, TV weight {cfg.tv_weight:g}, seed "
            f"{cfg.seed}) to minimize the mean squared Pearson correlation between the "
            f"{cfg.metric}-distance RDMs of every pair of the layers {', '.join(res.layers)}. "
            "Natural images make layer RDMs correlate across the hierarchy, so one brain region "
            "matches many layers; decorrelated RDMs let each layer be mapped on its own.",
        )
        sec.figure(image_grid(res.images), "Synthesized images (PNG files in images/).")
        sec.figure(
            correlation_matrices(res.correlations, res.layers),
            "Layer-by-layer Pearson correlation of RDMs for natural images, the synthesized "
            "images, and the natural images' residual RDMs (each layer with the other layers "
            "regressed out).",
        )
        sec.figure(
            orthogonality_bars(res.tables["orthogonality"]),
            f"Achieved orthogonality: mean |off-diagonal| correlation, synthesized {syn:.3f} vs "
            f"natural {nat:.3f} (ratio {syn / nat:.2f}).",
        )
        sec.table(res.tables["orthogonality"], "Orthogonality per image set.")
        sec.figure(optimization_curve(res.history, nat),
                   "Optimization curve: loss per step and the running mean |r| between layer RDMs.")
        sec.figure(rdm_panels(res.rdms["synthesized"], "synthesized images"),
                   "Layer RDMs of the synthesized images (rank-transformed for display).")
        sec.figure(rdm_panels(res.rdms["natural"], "natural images"),
                   "Layer RDMs of the natural images (rank-transformed for display).")
        if res.mapping is not None:
            res.mapping.add_to_report(sec)


# ----------------------------------------------------------------------------------------------
def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise CortexmapError("device='cuda' was asked for but no GPU is visible; use 'cpu'.")
    return torch.device(spec)


def _load_model(config: SynthesisConfig) -> torch.nn.Module:
    return load(config.model, weights=config.weights, arch=config.arch)


def _natural_images(config: SynthesisConfig, size: int) -> tuple[torch.Tensor, list[str]]:
    """Natural comparison set as (n, 3, size, size) in [0, 1] and its ids."""
    st = load_stimuli(config.natural, size=size)
    if len(st.ids) < 3:
        raise CortexmapError(
            f"The natural image set has {len(st.ids)} image(s); at least 3 are needed for RDMs."
        )
    return torch.from_numpy(np.ascontiguousarray(st.images)).permute(0, 3, 1, 2), list(st.ids)


@torch.no_grad()
def calibrate_batchnorm(objective: LayerRDMObjective, images: torch.Tensor) -> int:
    """Set every BatchNorm's running mean/var to its statistics over ``images`` (one batch).

    A randomly initialized torchvision network in eval mode normalizes with mean 0 / var 1,
    so activations shrink layer after layer until deep layers are numerically constant; with
    statistics measured on real images every layer stays well scaled. Returns the number of
    BatchNorm layers recalibrated.
    """
    bn_types = torch.nn.modules.batchnorm._BatchNorm
    bns = [m for m in objective.model.modules() if isinstance(m, bn_types)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    objective.model.train()
    try:
        objective.model(objective._prepare(images.to(objective.mean.device)))
    finally:
        objective.model.eval()
    return len(bns)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@torch.no_grad()
def _layer_rdms(objective: LayerRDMObjective, images: torch.Tensor, ids: list[str]) -> RDMs:
    vecs = objective.rdm_vectors(images.to(objective.mean.device)).double().cpu().numpy()
    return RDMs(vecs, images.shape[0], list(objective.layers), objective.metric, ids)


def _correlation_table(rdms: dict[str, RDMs]) -> pd.DataFrame:
    rows = []
    for name, r in rdms.items():
        pear, spear = compare(r, r, "pearson"), compare(r, r, "spearman")
        for a, la in enumerate(r.names):
            for b, lb in enumerate(r.names):
                rows.append({"set": name, "layer_a": la, "layer_b": lb,
                             "pearson": pear[a, b], "spearman": spear[a, b]})
    return pd.DataFrame(rows)


def _orthogonality_table(corrs: dict[str, np.ndarray], n_images: dict[str, int]) -> pd.DataFrame:
    rows = []
    for name, c in corrs.items():
        off = c[np.triu_indices(len(c), 1)]
        rows.append({"set": name, "n_images": n_images[name], "mean_abs_r": np.abs(off).mean(),
                     "max_abs_r": np.abs(off).max(), "mean_r2": (off**2).mean()})
    return pd.DataFrame(rows)


def run_synthesis(
    config: SynthesisConfig | None = None,
    outdir: str | os.PathLike = "runs/synthesis",
    overwrite: bool = False,
    progress: bool = True,
    model: torch.nn.Module | None = None,
) -> SynthesisResult:
    """Run the synthesis analysis; see the module docstring for the outputs.

    model: an already built torch module to use instead of loading ``config.model`` (the spec
    is then only a label). A run whose folder holds a ``checkpoint.pt`` from the same settings
    and network weights continues from it (``config.resume``); ``config.steps`` may be raised
    to extend a run.
    """
    config = config or SynthesisConfig()
    layers = list(config.layers) if config.layers else default_layers(config.model)
    out = Path(outdir)
    ckpt = out / "checkpoint.pt"
    device = _device(config.device)
    torch.manual_seed(config.seed)
    net = model if model is not None else _load_model(config)
    # a checkpoint of the same settings but other weights (e.g. a retrained zoo) is not resumed;
    # with overwrite, such a checkpoint is replaced instead of refused
    fingerprint = f"{config.fingerprint()}-{weights_fingerprint(net)[:16]}"
    resume = config.resume and ckpt.exists() and not (
        overwrite and checkpoint_fingerprint(ckpt) != fingerprint)
    if not resume:
        prepare_output_dir(out, overwrite)
    elif not overwrite and checkpoint_fingerprint(ckpt) == fingerprint:
        _check_finished_outputs(out, config)  # (another checkpoint is refused by synthesize)
    objective = LayerRDMObjective(net, layers, metric=config.metric,
                                  input_size=config.input_size).to(device)
    size = config.image_size or input_size_of(net)
    objective.check_input(size)
    nat_images, nat_ids = _natural_images(config, size)
    if config.calibrate_batchnorm:
        calibrate_batchnorm(objective, nat_images)

    param = make_parameterization(config.parameterization, config.n_images, size,
                                  seed=config.seed, decay_power=config.decay_power,
                                  squash=config.squash)
    with torch.no_grad():  # the control: the same images before any optimization step
        start_images = param().detach().clone()
    priors = PriorConfig(jitter=config.jitter, tv_weight=config.tv_weight,
                         range_weight=config.range_weight)
    t0 = time.perf_counter()
    opt = synthesize(objective, param, steps=config.steps, lr=config.lr, priors=priors,
                     seed=config.seed, checkpoint=ckpt, checkpoint_every=config.checkpoint_every,
                     resume=resume, fingerprint=fingerprint, progress=progress)
    t_synth = time.perf_counter() - t0

    synth_ids = [f"synth_{k:02d}" for k in range(config.n_images)]
    rdms = {
        "natural": _layer_rdms(objective, nat_images, nat_ids),
        "synthesized": _layer_rdms(objective, opt.images, synth_ids),
    }
    # ranks: the residuals are compared by Spearman correlation downstream (searchlight)
    rdms["residual"] = residual_rdms(rdms["natural"], rank=True)
    start = _layer_rdms(objective, start_images, synth_ids)
    corrs = {k: compare(v, v, "pearson") for k, v in {**rdms, "start": start}.items()}
    n_img = {"synthesized": config.n_images, "natural": len(nat_ids), "residual": len(nat_ids),
             "start": config.n_images}
    images = opt.images.permute(0, 2, 3, 1).numpy()

    tables = {
        "layer_correlations": _correlation_table(rdms),
        "orthogonality": _orthogonality_table(corrs, n_img),
        "history": opt.history,
        "rdms": pd.concat([r.to_frame().assign(set=k) for k, r in rdms.items()],
                          ignore_index=True),
    }
    mapping = None
    if config.mapping:
        mapping = compare_mappings(
            rdms, out / "mapping", snr=config.phantom_snr, n_subjects=config.phantom_subjects,
            resolution_mm=config.phantom_resolution_mm, radius_mm=config.searchlight_radius_mm,
            threshold=config.map_threshold, alpha=config.map_alpha,
            n_perm=config.map_permutations, seed=config.seed, scheduler=config.scheduler,
            overwrite=True, progress=progress,
        )
        tables.update(mapping.tables)

    result = SynthesisResult(config=config, outdir=out, layers=layers, images=images, rdms=rdms,
                             correlations=corrs, history=opt.history, tables=tables,
                             findings=[], mapping=mapping,
                             extras={"resumed_from": opt.resumed_from, "image_size": size,
                                     "synthesis_seconds": t_synth})
    result.findings = _findings(result)

    files = {f"images/{synth_ids[k]}.png": _png(images[k]) for k in range(config.n_images)}
    files |= {f"rdms_{k}.npz": r.save for k, r in rdms.items()}
    # the natural folder's checksum is what _check_finished_outputs compares on a resume
    natural = {} if config.natural == "bundled" else {"natural": config.natural}
    write_outputs(result, out, f"Layer-orthogonalizing synthesis: {config.model}",
                  findings=False, files=files,
                  inputs={"synthesized_images": images, **natural})
    return result


def _findings(res: SynthesisResult) -> list[Finding]:
    nat, syn = res.orthogonality("natural"), res.orthogonality("synthesized")
    resid, start = res.orthogonality("residual"), res.orthogonality("start")
    k = len(res.layers)
    out = [Finding(
        claim="Natural images give layer RDMs that correlate across the hierarchy; synthesized "
              "images bring the mean |off-diagonal| correlation well below it "
              f"(< {WELL_BELOW:g} x natural), below that of their unoptimized starting images.",
        reproduced=bool(syn < WELL_BELOW * nat and syn < start),
        numbers=f"mean |r| over {k * (k - 1) // 2} layer pairs ({res.config.model}): "
                f"synthesized {syn:.3f} ({res.config.n_images} images, {len(res.history)} "
                f"steps) vs natural {nat:.3f} (ratio {syn / nat:.2f}); residual RDMs {resid:.3f}.",
        analysis="synthesis",
        evidence="in-silico",
        criterion=f"Mean |r| between layer RDMs of the synthesized images is below "
                  f"{WELL_BELOW:g} x that of the natural images and below that of the same "
                  "images before optimization.",
        control=f"starting images (the parameterization before any step): mean |r| "
                f"{start:.3f}; synthesized - start {syn - start:+.3f}.",
    )]
    if res.mapping is not None:
        out.extend(res.mapping.findings())
    return out

"""`run_benchmark`: networks x layers against real brain and behaviour RDMs.

The real data are the 92-image set (human IT fMRI of 4 subjects, monkey IT, 16 human
similarity judgements; Kriegeskorte et al. 2008) and the Algonauts-78 set (EVC and IT fMRI of 15
subjects; Cichy et al. 2019), read by :mod:`cortexmap.datasets`. Every chosen layer of every
network (real ImageNet networks, their untrained twins, the zoo) is scored per target as the
mean over subjects of Kendall tau-a (and Spearman) with the subject RDMs, beside the noise
ceiling, with CIs and tests from rsatoolbox's dual bootstrap over stimuli and subjects
(:mod:`cortexmap.rsa.evaluation`), in the style of Khaligh-Razavi & Kriegeskorte (2014). The
classic reference comparisons come with it (mIT vs hIT; the 8 model RDMs against hIT), and the
real-data variants of the universal-dimensions and residual-method analyses run on the same
layer activations (:mod:`cortexmap.analyses.real_variants`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from cortexmap.analyses.base import AnalysisConfig, Seed, write_outputs
from cortexmap.analyses.benchmark_report import (
    TARGETS,
    add_benchmark_sections,
    benchmark_figures,
    benchmark_findings,
)
from cortexmap.analyses.networks import (
    NetworkRDMs,
    default_networks,
    load_networks,
    network_rdms,
)
from cortexmap.analyses.real_variants import residual_variant, universal_variant
from cortexmap.datasets import FETCHERS, DataNotFoundError
from cortexmap.errors import CortexmapError
from cortexmap.models import imagenet_networks
from cortexmap.report import Finding, Report
from cortexmap.rsa import RDMs
from cortexmap.rsa.compare import canonical_method
from cortexmap.rsa.evaluation import ModelEvaluation, evaluate_models
from cortexmap.rsa.stats import fdr
from cortexmap.utils.io import prepare_output_dir
from cortexmap.utils.progress import track

#: target -> (data set, region, what it is)
LOW_LEVEL_MODELS = ("EVA", "HMAX", "V1", "Silhouette", "RADON")
CATEGORY_MODELS = ("animacy", "FaceBodyManmadeNatobj")


class BenchmarkConfig(AnalysisConfig):
    """Options of the model-vs-brain benchmark on real data (all have working defaults)."""

    networks: list[str] | None = Field(
        None, description="Model specs; default: the installed ImageNet networks (at most "
                          "max_imagenet), each with its ':untrained' twin, the zoo AlexNet "
                          "trained and untrained, and the zoo VGG.")
    max_imagenet: int = Field(2, ge=0, description="ImageNet networks in the default set.")
    layers: dict[str, list[str]] = Field(
        default_factory=dict, description="network -> layers; default: n_layers stages.")
    n_layers: int = Field(5, ge=2, description="Layers per network, evenly spaced stages.")
    targets: list[Literal["hIT", "mIT", "judgement", "EVC", "IT"]] = Field(
        default_factory=lambda: list(TARGETS))
    methods: list[str] = Field(default_factory=lambda: ["kendall_tau_a", "spearman"],
                               description="Comparison methods; the first is the primary one.")
    rdm_metric: Literal["correlation", "euclidean", "cosine"] = "correlation"
    n_boot: int = Field(1000, ge=10, description="Dual-bootstrap samples.")
    data_dir: str | None = Field(None, description="Folder holding kriegeskorte92/ and "
                                                   "algonauts78/ (default: search).")
    download: bool = Field(True, description="Download the data when no copy is found.")
    if_missing: Literal["error", "skip"] = Field(
        "error", description="Without the data: raise, or write a report saying it was skipped.")
    universal: bool = Field(True, description="Run the real-data universal-dimensions test.")
    n_dims: int = Field(20, ge=2, description="Principal dimensions per network (universal).")
    ks: list[int] = Field(default_factory=lambda: [1, 2, 3, 5, 10, 20])
    residual: bool = Field(True, description="Run the real-data residual-method test.")
    n_boot_variants: int = Field(300, ge=10, description="Stimulus bootstraps of the variants.")
    seed: Seed = 0

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        if not methods:
            raise ValueError("methods must name at least one comparison method")
        out = [canonical_method(m) for m in methods]
        bad = [m for m in out if m not in ("kendall_tau_a", "spearman", "pearson", "rho_a")]
        if bad:
            raise ValueError(f"methods {bad} have no noise ceiling; use kendall_tau_a, "
                             "spearman, pearson or rho_a")
        return out


@dataclass
class BenchmarkResult:
    """Tables (``scores``, ``best``, ``families``, ``ceilings``, ``pairwise``, ``reference``
    and the variants' tables), findings, figures' inputs; ``skipped`` says why nothing ran."""

    config: BenchmarkConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    outdir: Path | None = None
    skipped: str = ""

    def add_to_report(self, report: Report) -> None:
        add_benchmark_sections(self, report)


def load_real_data(cfg: BenchmarkConfig) -> dict:
    """The data sets the targets need, by name (raises DataNotFoundError when absent)."""
    names = dict.fromkeys(TARGETS[t][0] for t in cfg.targets)
    return {n: FETCHERS[n](cfg.data_dir, download=cfg.download) for n in names}


def target_rdms(data: dict, target: str) -> RDMs:
    """Subject RDMs of one target (sessions averaged), or the one group RDM of mIT."""
    dataset, region, _ = TARGETS[target]
    d = data[dataset]
    if target == "mIT":
        return d.rdms.select(region=region)
    return d.subject_rdms(region)


def model_rdms(nets: dict[str, NetworkRDMs], dataset: str) -> RDMs:
    """Every network's layer RDMs for one data set, named ``network|layer``."""
    stacked = RDMs.concat([net.rdms[dataset] for net in nets.values()])
    names = [f"{n}|{layer}" for n, net in nets.items() for layer in net.layers]
    return RDMs(stacked.vectors, stacked.n_conditions, names, stacked.metric,
                stacked.conditions, stacked.descriptors)


def _evaluation_rows(ev: ModelEvaluation, nets: dict[str, NetworkRDMs], target: str,
                     names: list[tuple[str, str]]) -> pd.DataFrame:
    frame = ev.to_frame()
    frame.insert(0, "target", target)
    frame.insert(1, "network", [n for n, _ in names])
    frame.insert(2, "family", [nets[n].family for n, _ in names])
    frame.insert(3, "layer", [layer for _, layer in names])
    frame.insert(4, "depth", [nets[n].depth()[layer] for n, layer in names])
    frame["q_zero"] = fdr(frame.p_zero.to_numpy())
    return frame.drop(columns="model")


def _best_layers(ev: ModelEvaluation, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    rows, picks = [], []
    for _, sub in frame.groupby("network", sort=False):
        idx = sub.index.to_numpy()
        k = int(idx[np.argmax(sub.score.to_numpy())])
        stability = ev.best_fraction(idx)[list(idx).index(k)]
        row = frame.loc[k].to_dict()
        row["stability"] = float(stability)
        rows.append(row)
        picks.append(k)
    return pd.DataFrame(rows), picks


def _score_targets(cfg: BenchmarkConfig, data: dict, nets: dict[str, NetworkRDMs],
                   progress: bool) -> dict[str, pd.DataFrame]:
    scores, best, ceilings, pairwise = [], [], [], []
    jobs = [(t, m) for t in cfg.targets for m in cfg.methods]
    for target, method in track(jobs, "benchmark: scoring", enabled=progress):
        dataset = TARGETS[target][0]
        names = [(n, layer) for n, net in nets.items() for layer in net.layers]
        models = model_rdms(nets, dataset)
        data_rdms = target_rdms(data, target)
        ev = evaluate_models(models, data_rdms, method, cfg.n_boot, cfg.seed)
        frame = _evaluation_rows(ev, nets, target, names)
        scores.append(frame)
        top, picks = _best_layers(ev, frame)
        best.append(top)
        pairs = ev.subset(picks).pairwise()
        label = {f"{n}|{layer}": n for n, layer in names}
        pairs["model_a"] = pairs.model_a.map(label)
        pairs["model_b"] = pairs.model_b.map(label)
        pairs.insert(0, "target", target)
        pairs.insert(1, "method", method)
        pairwise.append(pairs)
        nc = ev.ceiling
        row = {"target": target, "method": method, "n_subjects": ev.n_subjects,
               "n_stimuli": ev.n_conditions,
               "lower": np.nan if nc is None else nc.lower,
               "upper": np.nan if nc is None else nc.upper,
               "best_cv": np.nan, "best_cv_layers": ""}
        if nc is not None and ev.n_subjects >= 2:
            # the best layer chosen on the other subjects: no bonus for picking among many
            row["best_cv"], chosen = ev.crossvalidated_best()
            picked = pd.Series([ev.names[i] for i in chosen]).value_counts()
            row["best_cv_layers"] = "; ".join(f"{n.replace('|', ' ')} x{c}"
                                              for n, c in picked.items())
        ceilings.append(row)
    best_df = pd.concat(best, ignore_index=True)
    primary = best_df[best_df.method == cfg.methods[0]]
    families = (primary.sort_values("score", ascending=False)
                .groupby(["target", "family"], sort=False).head(1)
                .sort_values(["target", "family"]).reset_index(drop=True))
    return {"scores": pd.concat(scores, ignore_index=True), "best": best_df,
            "families": families, "ceilings": pd.DataFrame(ceilings),
            "pairwise": pd.concat(pairwise, ignore_index=True)}


def _reference(cfg: BenchmarkConfig, data: dict) -> pd.DataFrame:
    """mIT vs hIT (group RDMs and against the hIT subjects) and the 8 model RDMs vs hIT."""
    if "kriegeskorte92" not in data:
        return pd.DataFrame()
    k92 = data["kriegeskorte92"]
    mit = k92.rdms.select(region="mIT")
    group = k92.rdms.select(region="hIT (group)")
    rows = []
    for method in cfg.methods:
        ev = evaluate_models(mit, group, method, cfg.n_boot, cfg.seed)
        f = ev.to_frame().assign(comparison="mIT vs hIT group RDM (316 voxels)")
        rows.append(f)
        models = RDMs.concat([k92.model_rdms, RDMs(mit.vectors, mit.n_conditions,
                                                   ["mIT (674 neurons)"], "correlation")])
        ev = evaluate_models(models, k92.subject_rdms("hIT"), method, cfg.n_boot, cfg.seed)
        f = ev.to_frame().assign(comparison="model RDM vs hIT subjects")
        pairs = ev.pairwise()
        f["best_category_vs_low_level_q"] = np.nan
        cat = f[f.model.isin(CATEGORY_MODELS)].sort_values("score").model.iloc[-1]
        low = f[f.model.isin(LOW_LEVEL_MODELS)].sort_values("score").model.iloc[-1]
        hit = pairs[((pairs.model_a == cat) & (pairs.model_b == low))
                    | ((pairs.model_a == low) & (pairs.model_b == cat))]
        f.loc[f.model == cat, "best_category_vs_low_level_q"] = float(hit.q_fdr.iloc[0])
        rows.append(f)
    out = pd.concat(rows, ignore_index=True)
    return out[["comparison", "model", *[c for c in out.columns
                                        if c not in ("comparison", "model")]]]


_TITLE = "Real data: model-vs-brain benchmark"


def _write_skipped(cfg: BenchmarkConfig, out: Path, reason: str) -> BenchmarkResult:
    result = BenchmarkResult(cfg, outdir=out, skipped=reason)
    write_outputs(result, out, _TITLE, "skipped: the data are absent", findings=False)
    return result


def run_benchmark(
    config: BenchmarkConfig | None = None,
    outdir: str | os.PathLike = "benchmark",
    overwrite: bool = False,
    progress: bool = True,
) -> BenchmarkResult:
    """Run the model-vs-brain benchmark on the real data and write its outputs to ``outdir``.

    Writes tables ``scores`` (every network x layer x target x method), ``best`` (best layer per
    network, target and method, with its bootstrap stability), ``families`` (the best network
    layer per family and target), ``ceilings``, ``pairwise`` (best layers of the networks
    against each other, FDR), ``reference`` (mIT vs hIT; the 8 model RDMs vs hIT), the
    variants' tables, ``figures/``, ``report.html`` and ``provenance.json``.

    Without the data, ``if_missing="error"`` raises before anything is written; ``"skip"``
    writes a report that says so and how to get the data.
    """
    cfg = config or BenchmarkConfig()
    try:
        data = load_real_data(cfg)
    except DataNotFoundError as exc:
        if cfg.if_missing == "error":
            raise
        return _write_skipped(cfg, prepare_output_dir(outdir, overwrite),
                              str(exc).splitlines()[0])
    specs = cfg.networks or default_networks(cfg.max_imagenet)
    unknown = sorted(set(cfg.layers) - set(specs))
    if unknown:
        raise CortexmapError(f"layers names networks {unknown} that are not in networks "
                             f"{specs}; add them to networks or fix the names.")
    models = load_networks(specs, cfg.layers, cfg.n_layers)  # bad specs fail before any output
    out = prepare_output_dir(outdir, overwrite)
    stimuli = {name: d.stimuli for name, d in data.items()}
    imagenet = imagenet_networks()
    nets = {spec: network_rdms(spec, *models.pop(spec), stimuli, imagenet, cfg.rdm_metric)
            for spec in track(specs, "benchmark: networks", enabled=progress)}
    tables = _score_targets(cfg, data, nets, progress)
    tables["reference"] = _reference(cfg, data)
    if cfg.universal:
        tables.update(universal_variant(cfg, data, nets))
    if cfg.residual:
        tables.update(residual_variant(cfg, data, nets))
    result = BenchmarkResult(cfg, tables, [], out)
    result.findings = benchmark_findings(result)
    # the layer RDMs, for reuse and checks
    rdm_files = {f"rdms/{dataset}.npz": model_rdms(nets, dataset).save for dataset in data}
    # data folders are hashed file by file; a network's weights by their fingerprint
    write_outputs(result, out, _TITLE,
                  f"{len(nets)} networks x {cfg.n_layers} layers, targets "
                  f"{', '.join(cfg.targets)}",
                  skip_empty=True, findings=False, files=rdm_files,
                  figures=benchmark_figures(result),
                  inputs={**{f"data:{n}": d.path for n, d in data.items()},
                          **{f"weights:{n}": net.weights for n, net in nets.items()}})
    return result

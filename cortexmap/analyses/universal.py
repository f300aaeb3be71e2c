"""`run_universal`: universal dimensions across networks and their brain alignment, end to end.

Networks (the zoo by default) see the same natural images; each chosen layer is reduced to its
principal dimensions; universality and brain similarity are estimated with cross-validated
ridge regression; the relation between them is tested; each network is reduced to its k most
(and, as a control, least) universal dimensions and compared with a brain region by RSA.

The default brain is a phantom whose region carries the responses of a network held out of the
analysed set: universal dimensions are, by definition, the ones a new network also has, so on
this phantom brain similarity should follow universality (the paper's finding for human cortex).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from scipy import stats

from cortexmap.analyses.base import BrainFields, Count, DaskFields, ModelSpec, Seed, write_outputs
from cortexmap.brain import BrainDataset, make_phantom, resolve_brain, slab_mask
from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, imagenet_networks, load
from cortexmap.models.layers import spatial_layers
from cortexmap.models.load import load_entry
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.weights import weights_record
from cortexmap.models.zoo import list_zoo
from cortexmap.report import Finding, Report
from cortexmap.rsa import CompareMethod, PatternMetric, RDMs, compute_rdms
from cortexmap.stimuli import load_folder
from cortexmap.stimuli.crops import natural_crops
from cortexmap.universal.dimensions import (
    Dimensions,
    brain_similarity,
    principal_dimensions,
    ranked_dimensions,
    universality,
)
from cortexmap.universal.figures import reduction_figure, relation_figure
from cortexmap.universal.reduction import reduction_curve
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir
from cortexmap.utils.progress import track
from cortexmap.utils.ridge import DEFAULT_ALPHAS

DEFAULT_BRAIN_NETWORK = "zoo:alexnet_sup_s1"


class UniversalConfig(BrainFields, DaskFields):
    """Options of the universal-dimensions analysis (all have working defaults)."""

    networks: list[str] | None = Field(
        None, description="Model specs (or SPEC=WEIGHTS, a network with its own weights "
                          "file); default: every zoo network except brain_network."
    )
    imagenet: int = Field(
        0, ge=0, description="Add up to this many of the real ImageNet networks installed here "
                             "(offline weight packages) to the default networks."
    )
    layers: dict[str, str] = Field(
        default_factory=dict,
        description="network -> layer; default: the last top-level conv or token layer.",
    )
    n_images: int = Field(300, ge=10, description="Natural images (crops of the bundled set).")
    image_folder: str | None = Field(None, description="Use these images instead of crops.")
    n_dims: int = Field(30, ge=1, description="Principal dimensions per network.")
    ks: list[int] = Field(default_factory=lambda: [1, 2, 3, 5, 7, 10, 15, 20, 30],
                          description="Dimension counts of the reduction curve (those above "
                                      "n_dims are left out).")
    n_folds: int = Field(5, ge=2)
    alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS))
    rdm_metric: PatternMetric = "euclidean"
    rsa_method: CompareMethod = "spearman"
    roi: str = "IT"
    brain_network: ModelSpec = DEFAULT_BRAIN_NETWORK
    phantom_snr: float = Field(1.0, gt=0, description="Phantom signal SD / noise SD per voxel.")
    phantom_subjects: Count = 2
    negative_control: bool = Field(
        True, description="Also run every statistic on a noise phantom (no planted signal).")
    seed: Seed = 0

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, ks: list[int]) -> list[int]:
        if not ks or min(ks) < 1:
            raise ValueError("ks must be a non-empty list of positive dimension counts")
        return sorted(set(ks))


@dataclass
class UniversalResult:
    """Tables: ``dimensions`` (one row per network x dim), ``relation``, ``reduction``, and the
    negative control on a noise phantom ``relation_noise``, ``reduction_noise``."""

    config: UniversalConfig
    tables: dict[str, pd.DataFrame]
    findings: list[Finding] = field(default_factory=list)
    outdir: Path | None = None

    def add_to_report(self, report: Report) -> None:
        dims, red, rel = (self.tables[k] for k in ("dimensions", "reduction", "relation"))
        sec = report.section(
            "Universal dimensions",
            "Chen & Bonner: dimensions of network representations that many networks share "
            "(universal) are the ones that match the brain. Universality = cross-validated ridge "
            "prediction (Pearson r) of a network's principal dimension from each other network, "
            "averaged; brain similarity = the same prediction from the voxels of "
            f"`{self.config.roi}`.",
        )
        sec.figure(relation_figure(dims), "Brain similarity against universality of every "
                   "principal dimension of every network (hexagonal bins show density; line: "
                   "least-squares fit). Universal dimensions are the brain-like ones when the "
                   "cloud rises to the right.")
        sec.table(rel, "Correlation between universality and brain similarity across "
                  "dimensions, all networks pooled and per network.")
        if "relation_noise" in self.tables:
            sec.table(self.tables["relation_noise"], "Negative control: the same correlation "
                      "with a noise phantom (random voxel patterns, nothing planted) as the "
                      "brain; a working method finds no relation here.")
        sec.figure(reduction_figure(red), "ROI RSA of RDMs built from each network's k most "
                   "universal dimensions (blue) and k least universal dimensions (grey), mean "
                   "over networks with SEM; dashed: the full layer.")
        top = dims.sort_values("universality", ascending=False).head(15)
        sec.table(top[["network", "dim", "explained_variance", "universality",
                       "brain_similarity"]], "The 15 most universal dimensions.")


def _default_layer(model, size: int) -> str:
    """The last top-level layer with a spatial grid: a conv map (C, H, W) or tokens (T, D)."""
    spatial = spatial_layers(model, size, top_level=True, tokens=True)
    if spatial:
        return spatial[-1]
    raise CortexmapError(
        "Could not choose a default layer (no top-level convolutional or token layer); set "
        "layers={network: layer} in the config."
    )


def _stimuli(cfg: UniversalConfig, size: int):
    if cfg.image_folder:
        return load_folder(cfg.image_folder, size=size)
    return natural_crops(cfg.n_images, size=size, seed=cfg.seed)


def network_activations(
    model, layer: str | None, stimuli, progress: bool = False
) -> tuple[str, np.ndarray]:
    """(layer used, activations (n_images, n_units) flattened) of one loaded network."""
    size = input_size_of(model)
    layer = layer or _default_layer(model, size)
    acts = Extractor(model, [layer], pooling="none").extract(stimuli, progress=progress)[layer]
    return layer, acts.reshape(len(acts), -1).astype(np.float64)


def _default_networks(cfg: UniversalConfig) -> list[str]:
    names = [f"zoo:{e.name}" for e in list_zoo()]
    if cfg.imagenet:
        names = imagenet_networks()[:cfg.imagenet] + names
    return [n for n in names if n != cfg.brain_network]


def _brain_patterns(cfg: UniversalConfig, dataset: BrainDataset | None, stimuli, out: Path,
                    progress: bool) -> list[np.ndarray]:
    """ROI patterns (n_images, n_voxels) per subject, from a dataset folder (``dataset``, see
    :func:`cortexmap.brain.resolve_brain`) or, when it is None, the phantom written here."""
    if dataset is None:
        _, planted = network_activations(load(cfg.brain_network),
                                         cfg.layers.get(cfg.brain_network), stimuli)
        ds = make_phantom(
            {cfg.roi: planted}, out / "phantom", n_subjects=cfg.phantom_subjects, n_runs=2,
            snr=cfg.phantom_snr, mask=slab_mask(3), conditions=list(stimuli.ids),
            seed=cfg.seed, overwrite=True, progress=progress, compress=False,
        )
        dataset = BrainDataset.of_phantom(ds)
    ids = list(stimuli.ids)
    return dataset.load(conditions=ids).patterns(cfg.roi, ids)


def _noise_phantom(brain: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """The negative-control phantom: Gaussian noise patterns of each subject's ROI shape, with
    no planted signal (any relation found on it is the method's own bias)."""
    return [np.random.default_rng([seed, 1, i]).standard_normal(np.shape(b))
            for i, b in enumerate(brain)]


def _relation_table(dims: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, sub in [("all networks", dims), *dims.groupby("network")]:
        rho = stats.spearmanr(sub.universality, sub.brain_similarity)
        r = stats.pearsonr(sub.universality, sub.brain_similarity)
        rows.append({"networks": name, "n_dims": len(sub), "spearman_rho": rho.statistic,
                     "spearman_p": rho.pvalue, "pearson_r": r.statistic, "pearson_p": r.pvalue})
    return pd.DataFrame(rows)


def _k80(red: pd.DataFrame) -> tuple[float, int | None, pd.Series, pd.Series]:
    """Full-layer RSA, the smallest k whose most-universal dimensions reach 80 % of it, and the
    mean RSA of the most / least universal k dimensions."""
    mean = red.groupby(["selection", "k"]).rsa.mean()
    full = mean["full layer"].mean()
    most, least = mean["most universal"], mean["least universal"]
    enough = most[most >= 0.8 * full]
    return full, (int(enough.index.min()) if len(enough) else None), most, least


def _findings(cfg: UniversalConfig, rel: pd.DataFrame, red: pd.DataFrame,
              rel_noise: pd.DataFrame | None, red_noise: pd.DataFrame | None) -> list[Finding]:
    evidence = "method-check" if cfg.brain == "phantom" else "real-data"
    where = (f"on the phantom brain whose {cfg.roi} carries {cfg.brain_network}'s responses"
             if evidence == "method-check" else f"in {cfg.roi} of {cfg.brain}")
    pooled = rel.iloc[0]
    noise_ok, control1, control2 = True, "negative control not run", "negative control not run"
    if rel_noise is not None:
        pn = rel_noise.iloc[0]
        noise_ok = not (pn.spearman_rho > 0 and pn.spearman_p < 0.05)
        control1 = (f"noise phantom (random voxel patterns, no planted signal): Spearman rho = "
                    f"{pn.spearman_rho:.2f} (p = {pn.spearman_p:.1e})")
    found = [Finding(
        f"Brain similarity of a network dimension rises with its universality across networks "
        f"({where})",
        bool(pooled.spearman_rho > 0 and pooled.spearman_p < 0.05 and noise_ok),
        f"Spearman rho = {pooled.spearman_rho:.2f} (p = {pooled.spearman_p:.1e}) over "
        f"{int(pooled.n_dims)} dimensions",
        "universal",
        evidence=evidence,
        criterion="Spearman rho between universality and brain similarity over dimensions is "
                  "above 0 with p < 0.05, and not so on a negative-control noise phantom.",
        control=control1,
    )]
    full, k80, most, least = _k80(red)
    if red_noise is not None:
        nfull, nk80, nmost, _ = _k80(red_noise)
        control2 = (f"noise phantom: full layer RSA {nfull:.3f}, most-universal k=1..10 "
                    f"{nmost[nmost.index <= 10].mean():.3f} on average")
    found.append(Finding(
        f"Fewer than ten most-universal dimensions keep most (>= 80 %) of the full layer's "
        f"brain RSA, the least-universal ones do not ({where})",
        bool(k80 is not None and k80 < 10 and least.get(k80, np.inf) < most[k80]),
        f"full layer RSA {full:.3f}; k80 = {k80 if k80 is not None else 'not reached'}"
        + (f" (most {most[k80]:.3f} vs least {least[k80]:.3f})" if k80 is not None else ""),
        "universal",
        evidence=evidence,
        criterion="The smallest k whose most-universal dimensions reach 80 % of the full "
                  "layer's RSA is below 10, and the k least-universal ones score lower.",
        control=control2,
    ))
    return found


def run_universal(
    config: UniversalConfig | None = None,
    outdir: str | os.PathLike = "universal",
    overwrite: bool = False,
    progress: bool = True,
    *,
    activations: dict[str, np.ndarray] | None = None,
    brain: list[np.ndarray] | None = None,
    brain_rdm=None,
) -> UniversalResult:
    """Run the universal-dimensions analysis and write its outputs to ``outdir``.

    Keyword-only overrides for the Python API: ``activations`` (network -> (n_images, n_units),
    instead of loading ``config.networks``), ``brain`` (per-subject ROI patterns
    (n_images, n_voxels), instead of ``config.brain``) and ``brain_rdm`` (an ``RDMs`` with one
    RDM; default: mean of the subjects' correlation-distance RDMs).

    Writes tables ``dimensions``, ``relation``, ``reduction`` (Parquet + CSV), ``report.html``
    and ``provenance.json``.
    """
    cfg = config or UniversalConfig()
    dataset = resolve_brain(cfg, regions=[cfg.roi]) if brain is None else None
    out = prepare_output_dir(outdir, overwrite)
    layers_used: dict[str, str] = {}
    stim, records = None, {}
    if activations is None:
        networks = cfg.networks or _default_networks(cfg)

        models = {spec: load_entry(spec) for spec in networks}  # every spec checked first
        records = {spec: weights_record(m) for spec, m in models.items()}
        # one image set for all, at the largest input size (each network resizes it down)
        stim = _stimuli(cfg, max(input_size_of(m) for m in models.values()))
        activations = {}
        for spec in track(networks, "universal: extracting networks", enabled=progress):
            layers_used[spec], activations[spec] = network_activations(
                models.pop(spec), cfg.layers.get(spec), stim)
    if brain is None:
        if stim is None:
            raise CortexmapError(
                "With precomputed activations, also pass brain= (per-subject ROI patterns over "
                "the same images)."
            )
        brain = _brain_patterns(cfg, dataset, stim, out, progress)
    dims: dict[str, Dimensions] = {
        n: principal_dimensions(a, cfg.n_dims, n, cfg.seed) for n, a in activations.items()
    }
    client = get_client(cfg.scheduler) if cfg.scheduler else None
    try:
        table = universality(activations, dims, cfg.n_folds, tuple(cfg.alphas), cfg.seed,
                             client=client, progress=progress)
    finally:
        close_client(client)
    sims = [brain_similarity(b, dims, cfg.n_folds, tuple(cfg.alphas), cfg.seed) for b in brain]
    table["brain_similarity"] = np.mean(sims, axis=0)
    noise = _noise_phantom(brain, cfg.seed) if cfg.negative_control else None
    if noise is not None:  # the negative control: the same statistics on pure noise
        table["brain_similarity_noise"] = np.mean(
            [brain_similarity(b, dims, cfg.n_folds, tuple(cfg.alphas), cfg.seed)
             for b in noise], axis=0)
    table["layer"] = table.network.map(layers_used).fillna("")
    if brain_rdm is None:
        subject_rdms = compute_rdms(list(brain), metric="correlation")
        brain_rdm = RDMs(subject_rdms.vectors.mean(0, keepdims=True),
                         subject_rdms.n_conditions, names=[cfg.roi], metric="correlation")
    ks = [k for k in cfg.ks if k <= cfg.n_dims]
    red = pd.concat([
        reduction_curve(n, dims[n].scores, ranked_dimensions(table, n), activations[n],
                        brain_rdm, ks, cfg.rdm_metric, cfg.rsa_method)
        for n in dims
    ], ignore_index=True)
    rel = _relation_table(table)
    tables = {"dimensions": table, "relation": rel, "reduction": red}
    rel_noise = red_noise = None
    if noise is not None:
        noise_rdm = compute_rdms(noise, metric="correlation")
        noise_rdm = RDMs(noise_rdm.vectors.mean(0, keepdims=True), noise_rdm.n_conditions,
                         names=[f"{cfg.roi} (noise)"], metric="correlation")
        red_noise = pd.concat([
            reduction_curve(n, dims[n].scores, ranked_dimensions(table, n), activations[n],
                            noise_rdm, ks, cfg.rdm_metric, cfg.rsa_method)
            for n in dims
        ], ignore_index=True)
        rel_noise = _relation_table(table.assign(brain_similarity=table.brain_similarity_noise))
        tables |= {"relation_noise": rel_noise, "reduction_noise": red_noise}
    result = UniversalResult(cfg, tables, _findings(cfg, rel, red, rel_noise, red_noise), out)
    for f in result.findings:  # which networks the verdicts come from
        f.numbers = f"{f.numbers}; networks: {', '.join(dims)}"
    write_outputs(result, out, "Universal dimensions",
                  f"{len(dims)} networks, {len(table)} dimensions", findings=False,
                  inputs=activations, models=records)
    return result

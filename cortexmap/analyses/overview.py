"""The opening sections of the main report: layer RDMs and layer CKA on the bundled images.

This is the toolkit's basic data flow in one place (stimuli -> extraction -> RDMs -> comparison
-> report) and shows the fact the synthesis analysis starts from: RDMs of different layers on
natural images are strongly correlated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cortexmap.models import Extractor, input_size_of, list_layers, load
from cortexmap.models.untrained import untrained_twin
from cortexmap.report import Finding, Report
from cortexmap.rsa import cka, compare, compute_rdms
from cortexmap.rsa.figures import plot_rdms, plot_similarity
from cortexmap.stimuli import load_bundled


def _cka_section(report: Report, model_spec: str, twin_name: str, layers: list[str],
                 acts: dict, acts_twin: dict, cka, plot_similarity) -> None:
    """Linear CKA (biased and debiased) between every pair of layers, trained and untrained."""
    n = len(next(iter(acts.values())))
    sims = {(net, debiased): cka({k: v for k, v in a.items() if k in layers}, debiased=debiased)
            for net, a in (("trained", acts), ("untrained", acts_twin))
            for debiased in (False, True)}
    sec = report.section(
        "Layer similarity by CKA",
        f"Linear centered kernel alignment (Kornblith et al. 2019) between the activations of "
        f"every pair of layers of `{model_spec}` on the same {n} photographs: the standard "
        "estimate and the debiased one (unbiased HSIC, Song et al. 2012), which removes the "
        f"upward bias of CKA when units far outnumber stimuli. Control: {twin_name}.",
    )
    sec.figure(plot_similarity(sims["trained", False], layers, layers, "linear CKA"),
               "Linear CKA between every pair of layers (trained network).")
    sec.figure(plot_similarity(sims["trained", True], layers, layers, "debiased linear CKA"),
               "Debiased linear CKA between every pair of layers (trained network): with few "
               "stimuli the standard estimate is inflated for wide layers, this one is not.")
    sec.table(cka_summary(sims), "Mean CKA between different layers and between adjacent "
              "layers, trained network and its untrained twin.")


def cka_summary(sims: dict[tuple[str, bool], np.ndarray]) -> pd.DataFrame:
    """One row per (network, debiased) layer x layer CKA matrix: the mean over pairs of
    different layers and over adjacent layers."""
    rows = []
    for (net, debiased), m in sims.items():
        iu = np.triu_indices(len(m), 1)
        rows.append({"network": net, "estimate": "debiased" if debiased else "standard",
                     "mean_offdiagonal_cka": float(np.mean(m[iu])),
                     "adjacent_layers_cka": float(np.mean(np.diag(m, 1)))})
    return pd.DataFrame(rows)


def layer_overview(
    report: Report, model_spec: str = "zoo:alexnet_sup_s0", layers: list[str] | None = None,
    image_size: int | None = None,
) -> list[Finding]:
    """Add a section with the layer RDMs of ``model_spec`` on the bundled photographs."""

    model = load(model_spec)
    size = image_size or input_size_of(model)
    if layers is None:
        layers = [i.name for i in list_layers(model, size) if "." not in i.name]
    stimuli = load_bundled(size=size)

    def layer_similarity(net):
        acts = Extractor(net, layers, pooling="none").extract(stimuli)
        rdms = compute_rdms([acts[layer].reshape(len(stimuli), -1) for layer in layers],
                            metric="correlation", names=layers, conditions=list(stimuli.ids))
        return rdms, compare(rdms, rdms, method="spearman"), acts

    rdms, sim, acts = layer_similarity(model)
    off = sim[np.triu_indices(len(layers), 1)]
    # control: the same architecture untrained -- how much of the correlation is learnt
    twin = untrained_twin(model, seed=1, spec=model_spec)
    _, sim_twin, acts_twin = layer_similarity(twin)
    off_twin = sim_twin[np.triu_indices(len(layers), 1)]
    sec = report.section(
        "Layer RDMs on the bundled images",
        f"Correlation-distance RDMs of every top-level layer of `{model_spec}` for the "
        f"{len(stimuli)} bundled photographs ({', '.join(sorted(set(stimuli.categories)))}), "
        "and the Spearman correlation between every pair of layer RDMs.",
    )
    sec.figure(plot_rdms(rdms), "RDM of each layer (percentile of dissimilarity); rows and "
               "columns are the bundled photographs in the same order.")
    sec.figure(plot_similarity(sim, layers, layers, "spearman"),
               "Spearman correlation between the RDMs of every pair of layers: natural images "
               "give correlated RDMs across the hierarchy.")
    sec.table(pd.DataFrame(sim, index=layers, columns=layers).reset_index(names="layer"),
              "Layer-by-layer RDM correlations (Spearman).")
    _cka_section(report, model_spec, twin.cortexmap_name, layers, acts, acts_twin, cka,
                 plot_similarity)
    return [Finding(
        "Natural images give layer RDMs that correlate strongly across the hierarchy "
        "(the premise of layer-orthogonalizing synthesis)",
        bool(np.mean(np.abs(off)) > 0.3),
        f"mean |Spearman| between layer RDMs = {np.mean(np.abs(off)):.2f} over "
        f"{len(off)} layer pairs of {model_spec}",
        "overview",
        evidence="in-silico",
        criterion="The mean |Spearman| between the RDMs of different layers exceeds 0.3.",
        control=f"{twin.cortexmap_name}: mean |Spearman| {np.mean(np.abs(off_twin)):.2f} over "
                "the same layer pairs ("
                + ("above the criterion too: the correlation comes with the images and the "
                   "architecture, not from training" if np.mean(np.abs(off_twin)) > 0.3 else
                   "below the criterion: training makes the layer RDMs correlate") + ").",
    )]

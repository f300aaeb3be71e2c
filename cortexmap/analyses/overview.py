"""The opening section of the main report: a model's layer RDMs on the bundled images.

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
from cortexmap.rsa import compare, compute_rdms
from cortexmap.rsa.figures import plot_rdms, plot_similarity
from cortexmap.stimuli import load_bundled


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
        return rdms, compare(rdms, rdms, method="spearman")

    rdms, sim = layer_similarity(model)
    off = sim[np.triu_indices(len(layers), 1)]
    # control: the same architecture untrained -- how much of the correlation is learnt
    twin = untrained_twin(model, seed=1, spec=model_spec)
    off_twin = layer_similarity(twin)[1][np.triu_indices(len(layers), 1)]
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

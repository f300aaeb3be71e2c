"""Networks and layers for the real-data analyses: which networks, which layers, their RDMs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cortexmap.models import Extractor, imagenet_networks, list_layers, load, resolve_layers
from cortexmap.models.load import weights_fingerprint
from cortexmap.models.weights import stage_layers as curated_stages
from cortexmap.rsa import RDMs, compute_rdms
from cortexmap.stimuli import StimulusSet

# Modules that only reshape, normalise or gate: never a representational stage of their own.
_SKIPPED_KINDS = ("Dropout", "Identity", "Flatten", "ZeroPad2d", "BatchNorm", "ReLU", "SiLU",
                  "GELU", "Sigmoid", "Tanh", "Hardswish", "Swish", "LayerNorm")
_UNTRAINED = ":untrained"
DEFAULT_ZOO = ("zoo:alexnet_sup_s0", "zoo:alexnet_untrained_s0", "zoo:vgg_sup_s0")


def family(spec: str, imagenet: list[str]) -> str:
    """"imagenet", "untrained" (a random twin) or "zoo" (the project's small networks)."""
    if spec.endswith(_UNTRAINED) or "_untrained" in spec:
        return "untrained"
    return "imagenet" if spec in imagenet else "zoo"


def default_networks(max_imagenet: int = 2) -> list[str]:
    """The installed ImageNet networks (at most ``max_imagenet``), each with its untrained twin,
    and three zoo networks: AlexNet trained and untrained, and a trained VGG (so universality
    has at least three trained networks to compare)."""

    nets = []
    for name in imagenet_networks()[:max_imagenet]:
        nets += [name, f"{name}{_UNTRAINED}"]
    return nets + list(DEFAULT_ZOO)


def stage_layers(model, size: int, n_layers: int) -> list[str]:
    """``n_layers`` layers evenly spaced over a network's processing stages, first and last
    included.

    The real ImageNet networks use their curated stage ends
    (:data:`cortexmap.models.weights.STAGE_LAYERS`). Otherwise stages are the top-level
    modules, with the backbone container (a module of >= 4 children that have children
    themselves, e.g. ``features``) replaced by its blocks; modules that only reshape, normalise
    or gate (dropout, batch norm, activations) are left out.
    """

    stages = curated_stages(model)  # the stage ends chosen for the real ImageNet networks
    if stages:
        return _spread(stages, n_layers)
    infos = list_layers(model, size)
    kind = {info.name: info.kind for info in infos}
    kids: dict[str, list[str]] = {}
    for info in infos:
        if "." in info.name:
            kids.setdefault(info.name.rsplit(".", 1)[0], []).append(info.name)
    stages = []
    # a ModuleList never runs itself, so its name appears only as a prefix of its blocks
    for top in dict.fromkeys(info.name.split(".")[0] for info in infos):
        children = kids.get(top, [])
        backbone = len(children) >= 4 and 2 * sum(c in kids for c in children) >= len(children)
        if backbone or top not in kind:
            stages += children
        else:
            stages.append(top)
    return _spread([s for s in stages if not kind[s].startswith(_SKIPPED_KINDS)], n_layers)


def _spread(stages: list[str], n: int) -> list[str]:
    """``n`` of ``stages`` evenly spaced, first and last included."""
    idx = np.unique(np.round(np.linspace(0, len(stages) - 1, min(n, len(stages)))).astype(int))
    return [stages[i] for i in idx]


@dataclass
class NetworkRDMs:
    """One network's layer RDMs per data set, and the activations kept for later analyses."""

    spec: str
    family: str
    layers: list[str]
    rdms: dict[str, RDMs]  # data set name -> RDMs (n_layers) named by layer
    activations: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    weights: str = ""

    def depth(self) -> dict[str, float]:
        """Relative depth of each chosen layer in [0, 1]."""
        n = max(len(self.layers) - 1, 1)
        return {layer: k / n for k, layer in enumerate(self.layers)}


def load_networks(specs: list[str], layers: dict[str, list[str]], n_layers: int
                  ) -> dict[str, tuple]:
    """spec -> (loaded model, chosen layers); every spec and named layer is checked here, before
    any work (unknown names raise a CortexmapError listing the valid ones)."""

    out = {}
    for spec in specs:
        model = load(spec)
        size = int(model.cortexmap_preprocessing.size)
        chosen = (resolve_layers(model, layers[spec]) if layers.get(spec)
                  else stage_layers(model, size, n_layers))
        out[spec] = (model, chosen)
    return out


def network_rdms(spec: str, model, chosen: list[str], stimuli: dict[str, StimulusSet],
                 imagenet: list[str], metric: str = "correlation", keep: int = 1) -> NetworkRDMs:
    """Extract a loaded network's ``chosen`` layers for every stimulus set; layer RDMs.

    keep: how many of the deepest chosen layers keep their (flattened) activations for the
    universal-dimensions analysis (the last ``keep`` layers before the output layer).
    """

    size = int(model.cortexmap_preprocessing.size)
    out = NetworkRDMs(spec, family(spec, imagenet), chosen, {},
                      weights=weights_fingerprint(model))
    kept = chosen[-1 - keep:-1] if len(chosen) > keep else chosen[:keep]
    for name, stim in stimuli.items():
        acts = Extractor(model, chosen, pooling="none").extract(stim.resized(size))
        flat = {layer: a.reshape(len(a), -1) for layer, a in acts.items()}
        rdm = compute_rdms([flat[layer] for layer in chosen], metric=metric, names=chosen,
                           conditions=stim.ids)
        out.rdms[name] = RDMs(rdm.vectors, rdm.n_conditions, chosen, metric, stim.ids,
                              {"network": [spec] * len(chosen), "layer": chosen})
        out.activations[name] = {layer: flat[layer].astype(np.float64) for layer in kept}
    return out

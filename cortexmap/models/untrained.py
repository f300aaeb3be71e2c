"""Untrained copies of networks: the control every in-silico finding is compared against."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from cortexmap.models.load import load
from cortexmap.models.weights import UNTRAINED, split_untrained


def untrained_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture, re-initialised (seeded), in eval mode; the original is untouched.

    Every submodule with ``reset_parameters`` (convolutions, linear layers, normalisation layers
    and their running statistics) is reset with PyTorch's default initialisation; parameters held
    directly by other modules (e.g. position embeddings) are redrawn from N(0, 0.02^2).
    Attributes such as ``cortexmap_preprocessing`` are kept, so the copy sees the same inputs.
    """
    twin = copy.deepcopy(model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for module in twin.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                    continue
                for p in module.parameters(recurse=False):
                    nn.init.normal_(p, std=0.02)
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
    finally:
        torch.random.set_rng_state(gen_state)  # the caller's random stream is not consumed
    name = getattr(model, "cortexmap_name", type(model).__name__)
    twin.cortexmap_name = f"{name} (untrained copy, seed {seed})"
    return twin.eval()


def untrained_twin(model: nn.Module, seed: int = 0, spec: object = None) -> nn.Module:
    """An untrained version of ``model`` as its authors would start training it.

    When ``spec`` names a network of the model registry (a torchvision, timm or offline-weights
    name, not a zoo entry or a file), this is ``load(spec + ":untrained", seed=seed)``: the
    architecture's own initialisation scheme, which for many architectures differs from
    PyTorch's per-layer defaults (e.g. torchvision's MobileNetV2 draws convolutions from a
    fan-out normal). Otherwise, or when that network's parameters do not match ``model``'s,
    it is :func:`untrained_copy`.
    """
    name = spec if isinstance(spec, str) else None
    if name and not name.startswith("zoo:") and not split_untrained(name)[1] \
            and not Path(name).exists():
        twin = load(name + UNTRAINED, seed=seed)
        if _same_parameters(twin, model):
            twin.cortexmap_name = f"{name} (untrained, builder's initialisation, seed {seed})"
            return twin.eval()
    return untrained_copy(model, seed=seed)


def _same_parameters(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)

"""Untrained copies of networks: the control every in-silico finding is compared against."""

from __future__ import annotations

import copy

import torch
from torch import nn


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

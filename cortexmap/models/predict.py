"""Batched forward passes and class predictions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def logits_of(out) -> torch.Tensor:
    """The main output of a classifier: models may return tuples or named tuples (e.g.
    GoogLeNet's auxiliary heads) or objects with ``.logits``."""
    if isinstance(out, (tuple, list)):
        return out[0]
    return getattr(out, "logits", out)


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches of ``batch_size`` rows, outputs concatenated."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Arg-max class of ``model`` for each input row of ``x`` (n, 3, S, S) -> (n,) int."""
    device = next(model.parameters()).device
    return batched(lambda b: logits_of(model(b.to(device))).argmax(1).cpu(), x,
                   batch_size).numpy()

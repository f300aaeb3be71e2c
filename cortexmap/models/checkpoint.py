"""Checkpoint files of the project's own networks: format tag, atomic save, load, rebuild.

A checkpoint is a dict with ``format`` (:data:`CHECKPOINT_FORMAT`), ``arch``, ``num_classes``,
``train_norm``, ``model`` (state dict), ``preprocessing`` and ``history``; the training loop
writes it, the zoo reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.architectures import build, fold_batchnorm
from cortexmap.models.preprocessing import Preprocessing
from cortexmap.stimuli.procedural import CLASSES
from cortexmap.utils.io import atomic_path

CHECKPOINT_FORMAT = "cortexmap-checkpoint-v1"
# Normalisation of network inputs; measured on 4096 procedural training images (seed 0).
DATA_MEAN: tuple[float, float, float] = (0.474, 0.444, 0.434)
DATA_STD: tuple[float, float, float] = (0.220, 0.212, 0.215)


def save_checkpoint(path: str | os.PathLike, obj: dict[str, Any],
                    drop: tuple[str, ...] = ()) -> None:
    """Write checkpoint ``obj`` to ``path`` atomically, leaving out the keys in ``drop``."""
    with atomic_path(Path(path)) as tmp:
        torch.save({k: v for k, v in obj.items() if k not in drop}, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by the training loop; CortexmapError naming the file if
    unreadable."""
    p = Path(path)
    if not p.is_file():
        raise CortexmapError(f"Checkpoint {p} does not exist; check the path.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of every kind mean the same thing here
        raise CortexmapError(
            f"Weight file {p} is corrupt or not a PyTorch file ({type(exc).__name__}: {exc}); "
            "re-create it (retrain, or restore it from git)."
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CortexmapError(
            f"Weight file {p} is not a cortexmap checkpoint (no format tag {CHECKPOINT_FORMAT!r}); "
            "load plain state_dicts with cortexmap.models.load(path, arch=...)."
        )
    return ckpt


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>"
) -> nn.Module:
    """Build the architecture recorded in ``ckpt`` and load its weights (float32, eval mode)."""
    norm = bool(ckpt.get("train_norm", False))
    model = build(ckpt["arch"], ckpt.get("num_classes", len(CLASSES)), train_norm=norm)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CortexmapError(
            f"Weight file {path} does not match architecture {ckpt['arch']!r}: "
            f"{str(exc).splitlines()[0]} {' '.join(str(exc).split())[:300]}; the file belongs to "
            "another architecture or version; retrain it."
        ) from exc
    return fold_batchnorm(model.eval()).eval()


def attach_preprocessing(model: nn.Module, size: int, name: str) -> nn.Module:
    """Set ``cortexmap_preprocessing`` (the dataset's mean/std at ``size``) and
    ``cortexmap_name``."""
    model.cortexmap_preprocessing = Preprocessing(size=size, mean=DATA_MEAN, std=DATA_STD)
    model.cortexmap_name = name
    return model

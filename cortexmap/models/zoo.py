"""The bundled zoo: small networks trained by the project on the procedural object dataset.

Names (``cortexmap.models.load("zoo:NAME")`` dispatches here): ``alexnet_sup_s0``,
``alexnet_sup_s1``, ``vgg_sup_s0``, ``resnet_sup_s0``, ``vit_sup_s0``, ``alexnet_simclr_s0``,
``vgg_simclr_s0``, ``resnet_simclr_s0``, ``alexnet_untrained_s0``, ``resnet_untrained_s0``; epoch
checkpoints as ``NAME@epE`` (see :func:`checkpoints`).

Files live in ``cortexmap/data/zoo`` (or the folder named by ``$CORTEXMAP_ZOO_DIR``):
``index.json``, ``NAME.pt`` (float16 weights + training history), ``NAME@epE.pt``,
``NAME.json`` and ``NAME.md`` (model cards). They are produced by
``python scripts/train_zoo.py`` (see ``docs/zoo.md``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.checkpoint import attach_preprocessing, load_checkpoint, model_from_checkpoint

_NAME_RE = re.compile(r"^(?:zoo:)?(?P<base>[A-Za-z0-9_]+)(?:@ep(?P<epoch>\d+))?$")


@dataclass(frozen=True)
class ZooEntry:
    """One zoo network as listed in ``index.json``."""

    name: str
    arch: str
    objective: str
    seed: int
    epochs: int
    checkpoints: tuple[int, ...] = ()
    test_accuracy: dict[str, float] = field(default_factory=dict)
    linear_probe: bool = False
    n_params: int = 0


def zoo_dir() -> Path:
    """Folder holding the zoo (``$CORTEXMAP_ZOO_DIR`` or the package's ``data/zoo``)."""
    env = os.environ.get("CORTEXMAP_ZOO_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data" / "zoo"


def _index(root: Path | None = None) -> dict[str, dict[str, Any]]:
    root = root or zoo_dir()
    path = root / "index.json"
    if not path.is_file():
        raise CortexmapError(
            f"No zoo index at {path}; the zoo is not installed there. Build it with "
            "`python scripts/train_zoo.py` or point $CORTEXMAP_ZOO_DIR at a zoo folder."
        )
    try:
        return json.loads(path.read_text())["models"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CortexmapError(
            f"Zoo index {path} is corrupt ({exc}); restore it from git or rebuild it with "
            "`python scripts/train_zoo.py`."
        ) from exc


def list_zoo() -> list[ZooEntry]:
    """All networks in the zoo, sorted by name."""
    return [
        ZooEntry(
            name=name, arch=e["arch"], objective=e["objective"], seed=e["seed"],
            epochs=e["epochs"], checkpoints=tuple(e.get("checkpoints", ())),
            test_accuracy=dict(e.get("test_accuracy", {})),
            linear_probe=bool(e.get("linear_probe", False)), n_params=int(e.get("n_params", 0)),
        )
        for name, e in sorted(_index().items())
    ]


def _parse(name: str) -> tuple[str, int | None]:
    m = _NAME_RE.match(name.strip())
    index = _index()
    if m is None or m.group("base") not in index:
        raise CortexmapError(
            f"Unknown zoo model {name!r}; valid names: {', '.join(sorted(index))} "
            "(epoch checkpoints as NAME@epE, see `cortexmap zoo list`)."
        )
    base, epoch = m.group("base"), m.group("epoch")
    if epoch is not None:
        available = index[base].get("checkpoints", [])
        if int(epoch) not in available:
            raise CortexmapError(
                f"Zoo model {base!r} has no checkpoint at epoch {epoch}; available epochs: "
                f"{', '.join(map(str, available)) or 'none'}."
            )
        return base, int(epoch)
    return base, None


def checkpoints(name: str) -> list[int]:
    """Epochs with a saved checkpoint of ``name`` (load one with ``load_zoo(f"{name}@ep{E}")``)."""
    base, _ = _parse(name)
    return list(_index()[base].get("checkpoints", []))


def load_zoo(name: str) -> nn.Module:
    """Load zoo network ``name`` (``"alexnet_sup_s0"``, ``"zoo:vgg_sup_s0"``, ``"NAME@ep2"``).

    Returns the float32 module in eval mode with ``cortexmap_preprocessing`` (size 64, the
    dataset's mean/std) and ``cortexmap_name``. Raises CortexmapError for an unknown name or
    epoch (listing the valid ones) and for a missing, corrupt or mismatched weight file (naming it).
    """
    base, epoch = _parse(name)
    label = base if epoch is None else f"{base}@ep{epoch}"
    path = zoo_dir() / f"{label}.pt"
    if not path.is_file():
        raise CortexmapError(
            f"Weight file {path} of zoo model {label!r} is missing; restore it from git or "
            f"rebuild it with `python scripts/train_zoo.py {base}`."
        )
    ckpt = load_checkpoint(path)
    expected = _index()[base]["arch"]
    if ckpt.get("arch") != expected:
        raise CortexmapError(
            f"Weight file {path} holds a {ckpt.get('arch')!r} network but the zoo index says "
            f"{label!r} is {expected!r}; the file is mismatched: restore it from git or rebuild "
            f"it with `python scripts/train_zoo.py {base}`."
        )
    model = model_from_checkpoint(ckpt, path)
    attach_preprocessing(model, int(ckpt["preprocessing"]["size"]), label)
    model.cortexmap_history = list(ckpt.get("history", []))
    return model.eval()


def model_card(name: str, as_dict: bool = False) -> str | dict[str, Any]:
    """The model card of ``name``: Markdown text, or the full record with ``as_dict=True``."""
    base, _ = _parse(name)
    stem = zoo_dir() / base
    path = stem.with_suffix(".json" if as_dict else ".md")
    if not path.is_file():
        raise CortexmapError(f"Model card {path} is missing; rebuild it with "
                             f"`python scripts/train_zoo.py {base}`.")
    return json.loads(path.read_text()) if as_dict else path.read_text()

"""Provenance: what produced a result (config, package versions, seed, input checksums)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cortexmap.utils.io import write_json

_PACKAGES = (
    "cortexmap", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "pandas",
    "nibabel", "nilearn", "zarr", "dask", "rsatoolbox",
)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def checksum(obj: Any) -> str:
    """SHA-256 of a file, of every file in a folder (sorted), or of an array's bytes."""
    h = hashlib.sha256()
    if isinstance(obj, (str, os.PathLike)) and Path(obj).exists():
        p = Path(obj)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    else:
        arr = np.ascontiguousarray(np.asarray(obj))
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def provenance(
    config: Any = None,
    seed: int | None = None,
    inputs: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a provenance record. ``inputs`` maps a name to a path or an array to checksum;
    ``models`` maps a network to the record of its weights (source, file, sha256)."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "inputs": {k: checksum(v) for k, v in (inputs or {}).items()},
        **({"models": models} if models else {}),
    }


def write_provenance(outdir: str | os.PathLike, **kwargs: Any) -> Path:
    """Write ``provenance.json`` into ``outdir`` (see :func:`provenance`)."""
    return write_json(Path(outdir) / "provenance.json", provenance(**kwargs))

"""Atomic output: every result file is written to a temporary sibling, then renamed.

A crash or Ctrl-C therefore never leaves a half-written result behind, and a run that is
resumed can trust that any file it finds is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from cortexmap.errors import CortexmapError


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``path`` as an output folder; refuse a non-empty one unless ``overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CortexmapError(f"Output path {out} exists and is a file; choose a folder path.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CortexmapError(
            f"Output folder {out} already exists and is not empty; pass --overwrite "
            "(overwrite=True) to replace its results, or choose another folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; create parent folders."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise CortexmapError(
            f"Output file {p} already exists; pass --overwrite (overwrite=True) to replace it."
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Works for files and folders (e.g. a zarr store written by a library).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


def write_table(df: pd.DataFrame, path_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.parquet`` and ``<stem>.csv``, each atomically."""
    stem = Path(path_stem)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    with atomic_path(parquet) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    return parquet, csv

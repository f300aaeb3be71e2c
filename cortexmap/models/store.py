"""Activation store: one zarr v3 group per extraction, one array per layer (and unit mask).

Layout and guarantees
---------------------
- arrays: ``<layer>`` or ``<layer>@<mask>``, shape (n_stimuli, *unit_shape), float32, chunked
  one batch of stimuli per chunk, so each batch is one chunk write and memory stays bounded
  by one batch.
- root attrs: ``ids``, ``layers`` (array names), ``source_layers``, ``shapes``, ``model``,
  ``preprocessing``, ``pooling``, ``unit_masks``, ``batch_size``, ``n_stimuli`` and
  ``complete`` (versions and the full config are in ``provenance.json`` beside them).
- array attrs: ``done`` = number of stimuli already written, updated after every batch (zarr
  writes metadata atomically), so an interrupted run resumes at ``min(done)``.
- ``complete`` becomes True only after the last batch of every array; :class:`ActivationStore`
  refuses to read an incomplete store unless asked (``allow_incomplete=True``), so a partial
  store is never mistaken for a finished one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cortexmap.errors import CortexmapError
from cortexmap.utils.io import atomic_path

STORE_FORMAT = "cortexmap.activations/1"


def is_activation_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a store that cortexmap wrote (its own format tag)."""
    import json

    meta = Path(path) / "zarr.json"
    if Path(path).is_symlink() or not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and attrs.get("format") == STORE_FORMAT


def check_replaceable(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse to replace ``path`` unless it is empty or an activation store cortexmap wrote,
    and never when it is, holds or lies inside one of ``inputs``."""
    p = Path(path)
    where = p.resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        if where == src or where in src.parents or src in where.parents:
            raise CortexmapError(
                f"Output {p} overlaps the input {inp}; replacing it would delete your input. "
                "Choose an --out outside the input folder."
            )
    if not os.path.lexists(p):
        return
    if p.is_symlink() or not p.is_dir():
        kind = "a symbolic link" if p.is_symlink() else "a file"
        raise CortexmapError(
            f"Output {p} is {kind}, not an activation store; --overwrite only replaces stores "
            "that cortexmap wrote. Choose another --out."
        )
    if any(p.iterdir()) and not is_activation_store(p):
        raise CortexmapError(
            f"Output {p} is a folder cortexmap did not write (no activation-store metadata); "
            "--overwrite only replaces stores that cortexmap wrote, so nothing was deleted. "
            "Choose another --out."
        )


class ActivationStore:
    """Read access to an activation store written by :meth:`Extractor.to_store`.

    ``mode="r"`` (default) opens read-only; the Extractor opens with "r+" to write.
    Attributes: ``layers`` (array names), ``ids`` (stimulus ids), ``attrs`` (root attributes),
    ``complete``. ``array(layer)`` returns the zarr array, ``load(layer)`` a numpy array
    (n_stimuli, *unit_shape).
    """

    def __init__(
        self, path: str | os.PathLike, allow_incomplete: bool = False, mode: str = "r"
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise CortexmapError(
                f"Activation store {self.path} does not exist; run extraction first."
            )
        try:
            # readers open read-only (shared / read-only stores work); writers pass "r+"
            self._group = zarr.open_group(str(self.path), mode=mode)
        except Exception as exc:
            raise CortexmapError(
                f"{self.path} is not a cortexmap activation store (not a readable zarr store: "
                f"{exc}); choose another output path (--overwrite only replaces stores that "
                "cortexmap wrote)."
            ) from exc
        if self._group.attrs.get("format") != STORE_FORMAT:
            raise CortexmapError(
                f"{self.path} is a zarr store but not a cortexmap activation store; choose "
                "another output path (--overwrite only replaces stores that cortexmap wrote)."
            )
        if not allow_incomplete and not self.complete:
            raise CortexmapError(
                f"Activation store {self.path} is incomplete ({self.progress_text()}); rerun "
                "the same extraction to resume it, or pass --overwrite to start again."
            )

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        shapes: dict[str, tuple[int, ...]],
        ids: Sequence[str],
        chunk: int,
        attrs: dict[str, Any],
        array_attrs: dict[str, dict[str, Any]] | None = None,
        compressor: str | None = "zstd",
    ) -> ActivationStore:
        """Create an empty (incomplete) store; existing content at ``path`` is replaced.

        The empty store is built in a temporary sibling folder and renamed into place, so a
        crash during creation never leaves a half-made store behind.
        """
        p = Path(path)
        n = len(ids)
        comp = "auto" if compressor == "zstd" else None
        root_attrs = {
            **attrs,
            "format": STORE_FORMAT,
            "ids": list(ids),
            "layers": list(shapes),
            "shapes": {k: list(v) for k, v in shapes.items()},
            "n_stimuli": n,
            "batch_size": chunk,
            "complete": False,
        }
        with atomic_path(p) as tmp:
            group = zarr.open_group(str(tmp), mode="w", attributes=root_attrs)
            for name, shape in shapes.items():
                group.create_array(
                    name,
                    shape=(n, *shape),
                    chunks=(max(1, min(chunk, n)), *shape),
                    dtype="float32",
                    fill_value=np.nan,
                    compressors=comp,
                    attributes={"done": 0, **(array_attrs or {}).get(name, {})},
                )
        return cls(p, allow_incomplete=True, mode="r+")

    # --- reading ------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    @property
    def layers(self) -> list[str]:
        return list(self._group.attrs["layers"])

    @property
    def ids(self) -> list[str]:
        return list(self._group.attrs["ids"])

    @property
    def complete(self) -> bool:
        return bool(self._group.attrs.get("complete", False))

    @property
    def model(self) -> str:
        return str(self._group.attrs.get("model", ""))

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self._group.attrs.get("preprocessing")

    def __len__(self) -> int:
        return int(self._group.attrs["n_stimuli"])

    def __contains__(self, layer: str) -> bool:
        return layer in self.layers

    def __repr__(self) -> str:
        state = "complete" if self.complete else self.progress_text()
        return (
            f"ActivationStore({str(self.path)!r}, model={self.model!r}, layers={self.layers}, "
            f"n={len(self)}, {state})"
        )

    def _check(self, layer: str) -> None:
        if layer not in self.layers:
            raise CortexmapError(
                f"Layer {layer!r} is not in store {self.path}; stored layers: {self.layers}."
            )

    def array(self, layer: str) -> zarr.Array:
        """The zarr array of ``layer`` (n_stimuli, *unit_shape), read lazily."""
        self._check(layer)
        return self._group[layer]

    def load(
        self, layer: str, idx: slice | Sequence[int] | None = None, flat: bool = False
    ) -> np.ndarray:
        """Activations of ``layer`` as float32 (n, *unit_shape), or (n, n_units) if ``flat``."""
        arr = self.array(layer)
        data = (
            arr[:]
            if idx is None
            else (
                arr[idx]
                if isinstance(idx, slice)
                else arr.get_orthogonal_selection((np.asarray(idx),))
            )
        )
        return data.reshape(len(data), -1) if flat else data

    def done(self, layer: str) -> int:
        """Number of stimuli written so far for ``layer``."""
        return int(self.array(layer).attrs.get("done", 0))

    def progress_text(self) -> str:
        done = {k: int(self._group[k].attrs.get("done", 0)) for k in self._group.attrs["layers"]}
        return f"{min(done.values(), default=0)}/{len(self)} stimuli written"

    # --- writing (used by the Extractor) ----------------------------------------------------
    def write_batch(self, start: int, batch: dict[str, np.ndarray]) -> None:
        """Write one batch of every array, then advance each array's ``done`` counter."""
        for name, data in batch.items():
            self._group[name][start : start + len(data)] = data
        # Counters go after all the data: a crash in between only repeats this batch.
        for name, data in batch.items():
            self._group[name].attrs["done"] = start + len(data)

    def mark_complete(self) -> None:
        self._group.attrs["complete"] = True

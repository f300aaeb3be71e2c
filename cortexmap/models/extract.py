"""`Extractor`: activations of chosen layers via forward hooks, batched and deterministic.

The model runs in eval mode under ``torch.no_grad``; each hooked output is reduced at once
(pooling / unit masks) and copied off the graph, so an in-place op later in the network
(e.g. ``ReLU(inplace=True)`` after a conv) cannot alter what was recorded. Once every
requested layer has produced its output the forward pass is stopped early (the rest of the
network would only cost time). Batches stream to an :class:`ActivationStore`, whose per-array
``done`` counters let an interrupted run resume.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import StopForward, first_tensor, run_with_hooks
from cortexmap.models.layers import LayerInfo, probe, resolve_layers, token_grid
from cortexmap.models.load import weights_fingerprint
from cortexmap.models.preprocessing import Preprocessing, preprocess
from cortexmap.models.store import ActivationStore, check_replaceable
from cortexmap.models.unit_masks import as_unit_masks
from cortexmap.models.weights import weights_record
from cortexmap.utils.io import lock_output_path
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import checksum, write_provenance

Pooling = Literal["none", "mean", "max", "center"]
POOLINGS = ("none", "mean", "max", "center")


def spatial_view(t: torch.Tensor) -> torch.Tensor | None:
    """(n, C, H, W) view of a layer output, or None if it has no spatial grid.

    4-D outputs are taken as (n, C, H, W); 3-D token outputs (n, T, D) of vision transformers
    become (n, D, k, k) when T = k*k or T = 1 + k*k (a leading class token is dropped).
    """
    if t.ndim == 4:
        return t
    if t.ndim == 3 and (grid := token_grid(t.shape[1])) is not None:
        skip, k = grid
        n, _, d = t.shape
        return t[:, skip:].transpose(1, 2).reshape(n, d, k, k)
    return None


def center_index(n: int) -> slice:
    """Grid positions nearest the centre: the middle one (odd n) or middle two (even n)."""
    return slice(n // 2, n // 2 + 1) if n % 2 else slice(n // 2 - 1, n // 2 + 1)


class Extractor:
    """Record activations of ``layers`` of ``model`` for a set of stimuli.

    Parameters
    ----------
    model : nn.Module (from :func:`cortexmap.models.load`, or any module).
    layers : layer names (see :func:`~cortexmap.models.list_layers`) or a comma-separated string.
    pooling : "none" keeps the full map (C, H, W); "mean"/"max" pool over space (-> (C,));
        "center" keeps the centre position(s) (mean of the middle 1 or 2 per axis) (-> (C,)).
        Non-spatial outputs (n, D) pass through unchanged; token outputs (n, T, D) are pooled
        over their patch grid.
    unit_masks : None, a :class:`SpatialMask` (``center_disk``, ``periphery_ring``,
        ``image_mask``), a bool (S, S) map, a list of them, or a {name: mask} dict. Each mask
        gives one output per layer named ``"<layer>@<mask>"``: with pooling "none" the units at
        the selected positions, flattened channel-major to (C * k,); with "mean"/"max" pooled
        over the selected positions (C,).
    batch_size : stimuli per forward pass (and per zarr chunk).
    preprocessing : default ``model.cortexmap_preprocessing``.
    device : run on this device (the model is moved there); default the model's device.
    The model runs in eval mode under ``torch.no_grad``; its train/eval state is restored
    after each batch.
    early_stop : stop each forward pass once the last requested layer has run.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Sequence[str],
        pooling: Pooling = "none",
        unit_masks: Any = None,
        batch_size: int = 32,
        preprocessing: Preprocessing | None = None,
        device: str | torch.device | None = None,
        early_stop: bool = True,
    ) -> None:
        if pooling not in POOLINGS:
            raise CortexmapError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}.")
        if int(batch_size) != batch_size or batch_size < 1:
            raise CortexmapError(f"batch_size must be a positive integer; got {batch_size}.")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.pooling = pooling
        self.unit_masks = as_unit_masks(unit_masks)
        if self.unit_masks and pooling == "center":
            raise CortexmapError(
                "pooling='center' already picks one position; combine unit masks with pooling "
                "'none', 'mean' or 'max'."
            )
        self.batch_size = int(batch_size)
        self.preprocessing = (
            preprocessing or getattr(model, "cortexmap_preprocessing", None) or Preprocessing()
        )
        if device is not None:  # an explicit device moves the model there
            self.device = torch.device(device)
            model.to(self.device)
        else:
            p = next(iter(model.parameters()), None)
            self.device = p.device if p is not None else torch.device("cpu")
        self.early_stop = early_stop
        self._info: dict[str, LayerInfo] | None = None
        self._grids: dict[tuple[str, str], torch.Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] | None = None

    # --- planning -------------------------------------------------------------------------
    @property
    def layer_info(self) -> dict[str, LayerInfo]:
        """Raw output shape and calls per forward of each layer (probe pass, cached)."""
        if self._info is None:
            info = probe(self.model, self.layers, self.preprocessing.size, allow_partial=True)
            silent = [n for n in self.layers if n not in info]
            if silent:
                raise CortexmapError(
                    f"Layer(s) {silent} never run in eval mode (e.g. training-only auxiliary "
                    "heads), so they have no activations; choose other layers."
                )
            self._info = info
        return self._info

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """{output name: per-stimulus shape} after pooling / unit masks."""
        if self._shapes is None:
            dummy = {n: torch.zeros((1, *i.shape)) for n, i in self.layer_info.items()}
            self._shapes = {
                k: tuple(v.shape[1:])
                for n in self.layers
                for k, v in self._reduce(n, dummy[n]).items()
            }
        return self._shapes

    def _grid(self, layer: str, mask_name: str, h: int, w: int) -> torch.Tensor:
        key = (layer, mask_name)
        if key not in self._grids:
            assert self.unit_masks is not None
            g = self.unit_masks[mask_name].grid(h, w, self.preprocessing.size)
            self._grids[key] = torch.from_numpy(np.asarray(g, bool))
        return self._grids[key]

    def unit_positions(self, name: str) -> np.ndarray | None:
        """(k, 2) grid positions (row, col) kept for output ``"<layer>@<mask>"``."""
        layer, _, mask = name.partition("@")
        return None if not mask else np.argwhere(self._grids[(layer, mask)].numpy())

    # --- reduction of one layer output ------------------------------------------------------
    def _reduce(self, layer: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """One layer's output (b, ...) -> {output name: tensor (b, ...)} (may be views of it;
        the hook copies them at once)."""
        t = t.detach()
        if self.unit_masks:
            g = spatial_view(t)
            if g is None:
                raise CortexmapError(
                    f"Layer {layer!r} outputs shape {tuple(t.shape[1:])} with no spatial grid; "
                    "unit masks apply to convolutional maps (C, H, W) or patch tokens."
                )
            out = {}
            for mname in self.unit_masks:
                m = self._grid(layer, mname, g.shape[2], g.shape[3]).to(g.device)
                sel = g[:, :, m]  # (b, C, k)
                if self.pooling == "mean":
                    sel = sel.mean(-1)
                elif self.pooling == "max":
                    sel = sel.amax(-1)
                else:
                    sel = sel.reshape(len(sel), -1)
                out[f"{layer}@{mname}"] = sel
            return out
        if self.pooling == "none" or t.ndim <= 2:
            r = t
        else:
            g = spatial_view(t)
            if g is None:  # e.g. (n, T, D) with a non-square token count: pool over T
                r = (
                    t.mean(1)
                    if self.pooling == "mean"
                    else t.amax(1)
                    if self.pooling == "max"
                    else t[:, t.shape[1] // 2]
                )
            elif self.pooling == "mean":
                r = g.mean((2, 3))
            elif self.pooling == "max":
                r = g.amax((2, 3))
            else:
                r = g[:, :, center_index(g.shape[2]), center_index(g.shape[3])].mean((2, 3))
        return {layer: r}

    # --- running ------------------------------------------------------------------------
    def _batch_tensor(self, stimuli: Any, start: int, stop: int) -> torch.Tensor:
        if isinstance(stimuli, torch.Tensor):  # already-preprocessed model input
            x = stimuli[start:stop]
        else:
            x = preprocess(stimuli[start:stop], self.preprocessing)
        return x.to(self.device)

    def run_batch(
        self, x: torch.Tensor, out: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Activations for one preprocessed batch x (b, 3, S, S) -> {output name: (b, ...)}.

        ``out``: optional float32 CPU buffers (b, ...) per output name to write into (saves a
        copy when the caller already holds the destination, e.g. a slice of the result).
        """
        info = self.layer_info
        remaining = {n: info[n].calls for n in self.layers}
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())

        def make_hook(name: str):
            def hook(mod, inp, output):
                t = first_tensor(output)
                remaining[name] -= 1
                if remaining[name] == 0 and t is not None:  # last call of this module
                    # Copy now: a later in-place op (e.g. ReLU(inplace=True)) would alter t.
                    for k, v in self._reduce(name, t).items():
                        if out is not None:
                            captured[k] = out[k].copy_(v)
                        else:
                            captured[k] = v.to("cpu", torch.float32, copy=True).contiguous()
                    if self.early_stop and not any(v > 0 for v in remaining.values()):
                        raise StopForward

            return hook

        run_with_hooks(self.model, x, [(modules[n], make_hook(n)) for n in self.layers],
                       eval_mode=True)
        missing = [n for n in self.output_shapes() if n not in captured]
        if missing:
            raise CortexmapError(f"Layers {missing} produced no output for this batch.")
        return {k: captured[k] for k in self.output_shapes()}

    def batches(
        self,
        stimuli: Any,
        start: int = 0,
        progress: bool = False,
        description: str = "extracting",
        into: dict[str, np.ndarray] | None = None,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield (start index, {output name: ndarray (b, ...)}) for consecutive batches.

        ``into``: preallocated arrays (n, ...) per output; batches are then views into them.
        Otherwise every batch gets fresh arrays (safe to hand to another thread).
        """
        n = _length(stimuli)
        shapes = self.output_shapes()
        starts = range(start, n, self.batch_size)
        for s in track(starts, description, total=len(starts), enabled=progress):
            stop = min(n, s + self.batch_size)
            x = self._batch_tensor(stimuli, s, stop)
            if into is None:
                bufs = {k: np.empty((stop - s, *shape), np.float32) for k, shape in shapes.items()}
            else:
                bufs = {k: into[k][s:stop] for k in shapes}
            self.run_batch(x, out={k: torch.from_numpy(v) for k, v in bufs.items()})
            yield s, bufs

    def extract(self, stimuli: Any, progress: bool = False) -> dict[str, np.ndarray]:
        """All activations in memory: {output name: float32 ndarray (n, ...)}.

        ``stimuli``: a StimulusSet, float images (n, H, W, 3) in [0, 1], a preprocessed tensor
        (n, 3, S, S), or any sliceable image source with ``len`` (e.g. ``FolderImages``).
        """
        n = _length(stimuli)
        out = {k: np.empty((n, *s), np.float32) for k, s in self.output_shapes().items()}
        for _ in self.batches(stimuli, progress=progress, into=out):
            pass
        return out

    def store_attrs(self) -> dict[str, Any]:
        """What identifies this extraction in a store (compared when resuming)."""

        return {
            "model": str(getattr(self.model, "cortexmap_name", type(self.model).__name__)),
            "weights_sha256": weights_fingerprint(self.model),
            "preprocessing": self.preprocessing.to_dict(),
            "source_layers": list(self.layers),
            "pooling": self.pooling,
            "unit_masks": None
            if not self.unit_masks
            else {k: m.describe() for k, m in self.unit_masks.items()},
        }

    def to_store(
        self,
        stimuli: Any,
        path: str | os.PathLike,
        ids: Sequence[str] | None = None,
        resume: bool = True,
        overwrite: bool = False,
        progress: bool = True,
        compressor: str | None = "zstd",
    ) -> ActivationStore:
        """Stream activations into a zarr store at ``path``, one chunk per batch.

        An incomplete store made by the same extraction (same model, layers, pooling, masks,
        preprocessing, stimulus ids; any batch size) is resumed from its ``done`` counters; a
        complete one is returned as it is. A different or foreign store at ``path`` is refused
        unless ``overwrite``.
        """
        path = Path(path)
        n = _length(stimuli)
        ids = list(ids) if ids is not None else _ids_of(stimuli, n)
        if len(ids) != n or len(set(ids)) != n:
            raise CortexmapError(
                f"Need {n} unique stimulus ids; got {len(ids)} ({len(set(ids))} unique)."
            )
        lock_output_path(path)  # a second extraction into this store refuses while this runs
        if overwrite:  # only a store cortexmap wrote is replaced, never an input
            root = getattr(stimuli, "root", None)
            check_replaceable(path, [root] if root is not None else [])
        # contents, not only ids: the same file names with other pixels are another input
        attrs = self.store_attrs() | {"stimuli_sha256": _stimuli_fingerprint(stimuli)}
        shapes = self.output_shapes()
        start = 0
        store: ActivationStore | None = None
        if path.exists() and not overwrite:
            store = ActivationStore(path, allow_incomplete=True, mode="r+")
            self._check_same(store, attrs, ids, shapes)
            if store.complete:
                return store
            if not resume:
                raise CortexmapError(
                    f"{path} holds an incomplete run of this extraction; pass resume=True to "
                    "finish it or overwrite=True (--overwrite) to start again."
                )
            start = min(store.done(k) for k in shapes)
            start -= start % self.batch_size  # restart at a chunk boundary
        if store is None:
            array_attrs = {}
            for k in shapes:
                layer, _, mask = k.partition("@")
                array_attrs[k] = {"layer": layer, "mask": mask or None}
                if mask:  # output_shapes() built the grids; record which positions were kept
                    grid = self._grids[(layer, mask)]
                    array_attrs[k]["unit_positions"] = self.unit_positions(k).tolist()
                    array_attrs[k]["grid"] = list(grid.shape)

            store = ActivationStore.create(
                path,
                shapes,
                ids,
                self.batch_size,
                attrs
                | {
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "stimuli": getattr(stimuli, "name", type(stimuli).__name__),
                },
                array_attrs=array_attrs,
                compressor=compressor,
            )

            # provenance.json sits beside the zarr metadata (zarr ignores it)
            write_provenance(
                path,
                config=attrs | {"batch_size": self.batch_size, "compressor": compressor,
                                "weights": weights_record(self.model)},
                inputs={"stimulus_ids": np.array(ids)},
            )
        # Writes (compression + disk) run in one background thread while the next batch is
        # computed; at most one batch waits, so memory stays bounded by two batches. Writes
        # stay in order, so the ``done`` counters always describe a prefix of the stimuli.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cortexmap-store") as pool:
            pending: Future | None = None
            try:
                for s, batch in self.batches(
                    stimuli,
                    start=start,
                    progress=progress,
                    description=f"extracting -> {path.name}",
                ):
                    if pending is not None:
                        pending.result()  # re-raises a failed write here
                    pending = pool.submit(store.write_batch, s, batch)
            finally:
                # on any error (incl. Ctrl-C) let the queued write finish: progress is kept
                if pending is not None:
                    exc = pending.exception()
                    if exc is not None and sys.exc_info()[0] is None:
                        raise exc
        store.mark_complete()
        return store

    @staticmethod
    def _check_same(store: ActivationStore, attrs: dict, ids: list[str], shapes: dict) -> None:
        have = store.attrs
        diffs = [k for k, v in attrs.items() if _jsonish(have.get(k)) != _jsonish(v)]
        if have.get("ids") != ids:
            diffs.append("ids")
        if {k: list(v) for k, v in shapes.items()} != have.get("shapes"):
            diffs.append("shapes")
        if diffs:
            what = ", ".join("stimulus contents (same ids, other images)"
                             if d == "stimuli_sha256" else d for d in diffs)
            raise CortexmapError(
                f"{store.path} holds a different extraction (differs in: {what}); choose "
                "another output path or pass --overwrite (overwrite=True) to replace it."
            )


def _stimuli_fingerprint(stimuli: Any) -> str:
    """SHA-256 of what is extracted: the image files of a folder source, else the pixels."""

    files = getattr(stimuli, "files", None)
    if files is not None:
        return checksum(np.array([checksum(f) for f in files]))
    images = getattr(stimuli, "images", stimuli)
    if isinstance(images, torch.Tensor):
        return checksum(images.detach().cpu().numpy())
    if isinstance(images, np.ndarray):
        return checksum(images)
    return "unknown"  # another lazy source: never read whole into memory; ids are compared


def _jsonish(v: Any) -> Any:
    import json

    return json.loads(json.dumps(v, default=str))


def _length(stimuli: Any) -> int:
    try:
        return len(stimuli)
    except TypeError as exc:
        raise CortexmapError(
            f"Cannot extract from a {type(stimuli).__name__}; pass a StimulusSet, an (n, H, W, 3) "
            "array, a preprocessed (n, 3, S, S) tensor or an image source with len()."
        ) from exc


def _ids_of(stimuli: Any, n: int) -> list[str]:
    ids = getattr(stimuli, "ids", None)
    return list(ids) if ids is not None else [f"{i:06d}" for i in range(n)]


def extract(model: nn.Module, layers, stimuli, **kwargs) -> dict[str, np.ndarray]:
    """Shortcut: ``Extractor(model, layers, **kwargs).extract(stimuli)``."""
    return Extractor(model, layers, **kwargs).extract(stimuli)

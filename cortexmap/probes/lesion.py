"""Kernel lesions: remove each kernel (channel) of a layer and measure accuracy at each contrast.

After Akbarinia & Gil-Rodríguez (Vision Research 2020, "Deciphering image contrast in object
classification deep networks"): a handful of early kernels carry most of a network's
low-contrast performance. A *lesion* replaces the output of one or more channels of a layer by
zero (``mode="zero"``) or by the channel's mean activation over the test images of the same
contrast level (``mode="mean"``, which removes the information a channel carries without
changing the mean input downstream layers expect).

Efficient by construction:

* one forward pass of the intact network (:func:`_intact_pass`) records every chosen layer's
  output for every test image at every contrast, the pre-activation of the linear operation it
  feeds and the intact answers; per layer only the rest of the network (``tail``, cut from the
  same trace with :func:`cortexmap.models.split.tail_at`) runs per lesion;
* when the tail starts with a Conv2d (or Flatten -> Linear), that operation is not rerun
  (:class:`LinearStage`: cached pre-activation minus the removed channel's contribution);
* inputs a lesion does not change (:func:`changed_observations`) keep the intact answer;
* several lesions are evaluated in one forward pass (``batch_lesions`` copies of the cached
  activations with different channel masks stacked along the batch axis);
* chunks of lesions can be spread over Dask workers (``client`` from
  :func:`cortexmap.utils.dask.get_client`);
* with ``resume_dir`` each layer's results are written atomically as soon as the layer is done,
  so an interrupted sweep resumes where it stopped.

Shapes: cached activations (n_obs, C, ...) with n_obs = n_images x n_contrasts; a set of lesions
is a boolean mask (n_lesions, C) with True = removed; correctness (n_lesions, n_obs).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import fx, nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import forward_hooks
from cortexmap.models.predict import logits_of, predict
from cortexmap.models.preprocessing import input_size_of
from cortexmap.models.split import _copy, _layer_node, layer_output, split_at, tail_at, trace_model
from cortexmap.probes.contrast import check_contrasts, model_input, stack_contrasts
from cortexmap.probes.orientation import grating_responses
from cortexmap.stimuli import gratings
from cortexmap.utils.io import write_json, write_table
from cortexmap.utils.progress import track

LESION_MODES = ("zero", "mean")


# --------------------------------------------------------------------------- lesion masks
def kernel_masks(n_channels: int, kernels: Sequence[int] | None = None) -> np.ndarray:
    """One lesion per kernel: (n_kernels, n_channels) bool, row i removes ``kernels[i]``."""
    _check_channels(n_channels)
    idx = np.arange(n_channels) if kernels is None else _check_kernels(kernels, n_channels)
    masks = np.zeros((len(idx), n_channels), dtype=bool)
    masks[np.arange(len(idx)), idx] = True
    return masks


def set_masks(n_channels: int, sets: Sequence[Sequence[int]]) -> np.ndarray:
    """Multi-kernel lesions: (n_sets, n_channels) bool, row i removes every kernel in sets[i]."""
    _check_channels(n_channels)
    masks = np.zeros((len(sets), n_channels), dtype=bool)
    for i, s in enumerate(sets):
        if len(s) == 0:
            raise CortexmapError(f"Lesion set {i} is empty; list at least one kernel index.")
        masks[i, _check_kernels(s, n_channels)] = True
    return masks


def _check_channels(n_channels: int, layer: str = "the layer") -> None:
    if n_channels < 2:
        raise CortexmapError(
            f"{layer} has a single channel; a kernel lesion sweep needs a layer with several "
            "kernels (choose a convolutional layer or block, e.g. 'conv1')."
        )


def _check_kernels(kernels: Sequence[int], n_channels: int) -> np.ndarray:
    idx = np.asarray(list(kernels), dtype=int)
    bad = idx[(idx < 0) | (idx >= n_channels)]
    if len(bad):
        raise CortexmapError(
            f"Kernel indices {bad.tolist()} are out of range; the layer has {n_channels} kernels "
            f"(valid indices 0..{n_channels - 1})."
        )
    return idx


def lesion_name(kernels: Sequence[int]) -> str:
    """'3' for one kernel, '3+7+12' for a set."""
    return "+".join(str(int(k)) for k in kernels)


# --------------------------------------------------------------------------- the engine
def apply_lesions(
    acts: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Lesioned copies of ``acts``.

    acts (m, C, ...), masks (B, C) bool (True = removed), fill None (zero) or (m, C, ...) values
    to put in place of a removed channel. Returns (B * m, C, ...): lesion-major order.
    """
    b, c = masks.shape
    shape = (b, 1, c) + (1,) * (acts.ndim - 2)
    keep = (~masks).to(acts.dtype).view(shape)
    out = acts.unsqueeze(0) * keep
    if fill is not None:
        out = out + fill.unsqueeze(0) * (1.0 - keep)
    return out.reshape((b * acts.shape[0],) + tuple(acts.shape[1:]))


@dataclass
class LinearStage:
    """The tail's first linear operation: ``tail(a) == rest(conv(a))``.

    ``conv`` is a plain ``Conv2d``, or a ``Linear`` reached through a ``Flatten`` (and eval-mode
    ``Dropout`` / ``Identity``, e.g. the last conv block feeding the first fully connected
    layer; ``flatten`` says so). A lesion only changes a few input channels of ``conv``, and
    ``conv`` is linear, so the lesioned pre-activation is ``z - conv_nobias(a_removed - fill)``
    with ``z = conv(a)`` cached once (:meth:`preactivation`). For single-kernel lesions that
    correction costs 1/C_in of the operation, so the first layer after the lesion is never rerun.
    """

    conv: nn.Conv2d | nn.Linear
    rest: nn.Module
    flatten: bool = False

    def applies_to(self, acts: torch.Tensor) -> bool:
        """Whether the shortcut is valid for cached activations of this shape."""
        if isinstance(self.conv, nn.Conv2d):
            return acts.ndim == 4
        return acts.ndim >= 2 if self.flatten else acts.ndim == 2

    @torch.inference_mode()
    def preactivation(self, acts: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """``z = conv(acts)`` for the cached activations (batched)."""
        a = acts.flatten(1) if self.flatten else acts
        return torch.cat([self.conv(a[i : i + batch_size]) for i in range(0, len(a), batch_size)])

    @torch.inference_mode()
    def lesioned(
        self, z: torch.Tensor, acts: torch.Tensor, masks: torch.Tensor,
        fill: torch.Tensor | None, rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pre-activations after each lesion: z (m, C_out, ...) -> (B * m, C_out, ...).

        rows: optional indices of the observations to compute (then m = len(rows)); cheaper
        than gathering ``z``, ``acts`` and ``fill`` first.
        """
        if bool((masks.sum(1) == 1).all()):
            ks = masks.to(torch.int64).argmax(1).tolist()
            if isinstance(self.conv, nn.Conv2d):
                return self._conv_single(z, acts, ks, fill, rows)
            return self._linear_single(z, acts, ks, fill, rows)
        if rows is not None:
            z, acts, fill = z[rows], acts[rows], None if fill is None else fill[rows]
        diff = acts if fill is None else acts - fill  # what each removed channel contributed
        # per lesion, only its removed channels' share of the operation (k/C of its cost)
        per = int(np.prod(acts.shape[2:], dtype=np.int64)) if self.flatten else 1
        out = []
        for mask in masks:
            idx = torch.nonzero(mask).flatten()
            if len(idx) == 0:  # nothing removed: a copy (the rest may start with in-place ReLU)
                out.append(z.clone())
                continue
            part = diff.index_select(1, idx)
            if isinstance(self.conv, nn.Conv2d):
                c = self.conv
                d = nn.functional.conv2d(part, c.weight.index_select(1, idx), None, c.stride,
                                         c.padding, c.dilation)
            else:  # Linear, reading the channels' features as contiguous blocks of columns
                cols = (idx[:, None] * per + torch.arange(per, device=idx.device)).flatten()
                d = nn.functional.linear(part.flatten(1), self.conv.weight.index_select(1, cols))
            out.append(z - d)
        return torch.cat(out)

    @staticmethod
    def _removed(acts: torch.Tensor, k: int, fill: torch.Tensor | None,
                 rows: torch.Tensor | None) -> torch.Tensor:
        """What channel k contributed on each input: (m, ...)."""
        a = acts[:, k] if rows is None else acts[:, k].index_select(0, rows)
        if fill is not None:
            a = a - (fill[:, k] if rows is None else fill[:, k].index_select(0, rows))
        return a

    def _conv_single(self, z, acts, ks, fill, rows) -> torch.Tensor:
        # Correction = the removed channel's im2col (kh*kw shifted copies of its padded map,
        # stacked: cheap contiguous slices) times that channel's (kh*kw, C_out) weights, fused
        # with the subtraction from z in one GEMM per lesion, written positions-major, i.e. in
        # the channels-last layout of z. oneDNN handles single-input-channel convolutions
        # poorly, and F.unfold / advanced indexing on channels-last maps cost more than this.
        conv = self.conv
        m, c_out, oh, ow = z.shape
        kh, kw = conv.weight.shape[2:]
        (ph, pw), (sh, sw), (dh, dw) = conv.padding, conv.stride, conv.dilation
        zl = z.permute(0, 2, 3, 1).reshape(m, oh * ow * c_out)  # a view when channels-last
        if rows is not None:
            zl, m = zl.index_select(0, rows), len(rows)
        zl = zl.view(m * oh * ow, c_out)
        out = torch.empty((len(ks), m * oh * ow, c_out), dtype=z.dtype, device=z.device)
        for i, k in enumerate(ks):
            a = self._removed(acts, k, fill, rows)
            if ph or pw:
                a = nn.functional.pad(a, (pw, pw, ph, ph))
            cols = torch.stack([a[:, r * dh : r * dh + (oh - 1) * sh + 1 : sh,
                                  s * dw : s * dw + (ow - 1) * sw + 1 : sw]
                                for r in range(kh) for s in range(kw)]).view(kh * kw, -1)
            w = conv.weight[:, k].reshape(c_out, kh * kw).t()
            torch.addmm(zl, cols.t(), w, alpha=-1, out=out[i])
        return out.view(len(ks) * m, oh, ow, c_out).permute(0, 3, 1, 2)

    def _linear_single(self, z, acts, ks, fill, rows) -> torch.Tensor:
        # Flattened features of channel k are one contiguous block of the Linear's columns.
        if rows is not None:
            z = z.index_select(0, rows)
        m, n_out = z.shape
        per = int(np.prod(acts.shape[2:], dtype=np.int64)) if self.flatten else 1
        out = torch.empty((len(ks), m, n_out), dtype=z.dtype, device=z.device)
        for i, k in enumerate(ks):
            a = self._removed(acts, k, fill, rows).reshape(m, per)
            w = self.conv.weight[:, k * per : (k + 1) * per]
            torch.addmm(z, a, w.t(), alpha=-1, out=out[i])
        return out.view(len(ks) * m, n_out)


def _same_layout(t: torch.Tensor) -> torch.Tensor:
    """Feature maps in channels-last layout (see ``model_input``), other tensors contiguous."""
    if t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def _stage_chain(start: fx.Node, module) -> tuple[list[fx.Node], fx.Node, bool] | None:
    """The nodes from ``start`` to the linear operation that reads it, if it is one.

    ``start``'s value must feed only a plain Conv2d, or only a Linear through single-use
    ``Flatten`` / eval ``Dropout`` / ``Identity`` modules. Returns (pass-through nodes, the
    linear node, whether a Flatten precedes it), or None. ``module(target)`` resolves modules.
    """
    node, chain, flatten = start, [], False
    while True:
        if len(node.users) != 1:
            return None
        user = next(iter(node.users))
        if (user.op != "call_module" or len(user.args) != 1 or user.args[0] is not node
                or user.kwargs):
            return None
        mod = module(user.target)
        kind = type(mod)
        if kind is nn.Conv2d:
            ok = (not chain and mod.groups == 1 and mod.padding_mode == "zeros"
                  and not isinstance(mod.padding, str))
            return (chain, user, False) if ok else None
        if kind is nn.Linear:
            return chain, user, flatten
        if kind is nn.Flatten and not flatten and mod.start_dim == 1 and mod.end_dim == -1:
            flatten = True
        elif not ((kind is nn.Dropout and not mod.training) or kind is nn.Identity):
            return None
        chain.append(user)
        node = user


def linear_stage(tail: nn.Module) -> LinearStage | None:
    """:class:`LinearStage` of ``tail`` when its input feeds only a linear operation, else None.

    That is a plain Conv2d (groups=1, zero padding), or a Linear after Flatten (with eval-mode
    Dropout / Identity in between allowed). Anything else (pooling, normalisation, a branch
    such as a residual connection) gets no shortcut.
    """
    graph = getattr(tail, "graph", None)
    if graph is None:
        return None
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    found = _stage_chain(inputs[0], tail.get_submodule)
    if found is None:
        return None
    chain, lin, flatten = found
    conv = tail.get_submodule(lin.target)
    # rest = tail with the linear node turned into the input (graph surgery on a copy:
    # cheaper than tracing the tail again)
    rest = fx.GraphModule(tail, copy.deepcopy(graph))
    g = rest.graph
    old_input = next(n for n in g.nodes if n.op == "placeholder")
    nodes = [old_input]
    for _ in range(len(chain) + 1):
        nodes.append(next(iter(nodes[-1].users)))
    with g.inserting_before(old_input):
        preact = g.placeholder("preactivation")
    nodes[-1].replace_all_uses_with(preact)
    for n in reversed(nodes):
        g.erase_node(n)
    rest.recompile()
    return LinearStage(conv, rest.eval(), flatten)


@torch.inference_mode()
def lesion_correct(
    tail: nn.Module,
    acts: torch.Tensor,
    labels: torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    fill: torch.Tensor | None = None,
    batch_lesions: int | None = None,
    max_batch: int = 512,
    stage: LinearStage | None = None,
    z: torch.Tensor | None = None,
    changed: np.ndarray | None = None,
    base_correct: np.ndarray | None = None,
) -> np.ndarray:
    """Correctness of ``tail`` on lesioned cached activations: (n_lesions, n_obs) bool.

    acts (n_obs, C, ...) cached layer output; labels (n_obs,); masks (n_lesions, C) bool; fill as
    in :func:`apply_lesions`. ``batch_lesions`` lesions share one forward pass of up to
    ``max_batch`` rows (images are chunked so the stacked batch stays below it); the default
    stacks as many lesions as fill ``max_batch`` rows (several when the test set is small, one
    when it alone fills a batch: on CPUs larger stacks only add memory traffic). With ``stage``
    (see :func:`linear_stage`) and its cached output ``z = stage.conv(acts)``, only
    ``stage.rest`` runs per lesion. With ``changed`` (n_lesions, n_obs) from
    :func:`changed_observations` and the intact network's ``base_correct`` (n_obs,), inputs a
    lesion leaves unchanged are not run again.
    """
    masks_t = torch.as_tensor(np.asarray(masks), dtype=torch.bool).to(acts.device)
    n_les, n_obs = len(masks_t), len(acts)
    if batch_lesions is None:
        batch_lesions = max(1, int(max_batch) // max(n_obs, 1))
    b = max(1, min(int(batch_lesions), n_les))
    out = torch.empty((n_les, n_obs), dtype=torch.bool)
    for l0 in range(0, n_les, b):
        mb = masks_t[l0 : l0 + b]
        idx = None
        if changed is not None and base_correct is not None:
            need = changed[l0 : l0 + b].any(0)
            out[l0 : l0 + len(mb)] = torch.from_numpy(np.asarray(base_correct, dtype=bool))
            if need.mean() < 0.9:  # gathering rows costs more than it saves when few are skipped
                idx = torch.from_numpy(np.flatnonzero(need))
        lab_all = labels if idx is None else labels[idx]
        cols = torch.arange(n_obs) if idx is None else idx
        m = max(1, int(max_batch) // len(mb))
        for i0 in range(0, len(cols), m):
            sl = slice(i0, i0 + m)
            if stage is not None and z is not None:
                # the stage gathers only what it reads (z and the removed channels) itself
                pre = (stage.lesioned(z[sl], acts[sl], mb, None if fill is None else fill[sl])
                       if idx is None else stage.lesioned(z, acts, mb, fill, rows=idx[sl]))
                logits = stage.rest(pre)
            else:
                a = acts[sl] if idx is None else acts[idx[sl]]
                f = None if fill is None else (fill[sl] if idx is None else fill[idx[sl]])
                logits = tail(apply_lesions(a, mb, f))
            n = len(cols[sl])
            pred = logits_of(logits).argmax(1).view(len(mb), n)
            out[l0 : l0 + len(mb), cols[sl]] = pred.cpu() == lab_all[sl]
    return out.numpy()


def _chunk_task(tail, acts, labels, masks, fill, batch_lesions, max_batch, stage, z, changed,
                base_correct):
    """Dask task: evaluate one chunk of lesions on a worker (one torch thread per worker)."""
    torch.set_num_threads(1)
    # serialisation hands tensors over as contiguous NCHW: restore the channels-last layout
    acts = _same_layout(acts)
    z = None if z is None else _same_layout(z)
    fill = None if fill is None else _same_layout(fill)
    return lesion_correct(tail, acts, labels, masks, fill, batch_lesions, max_batch, stage, z,
                          changed, base_correct)


@torch.inference_mode()
def changed_observations(
    acts: torch.Tensor, masks: np.ndarray, fill: torch.Tensor | None
) -> np.ndarray:
    """(n_lesions, n_obs) bool: does lesion l change the layer output for observation i?

    It does not when every removed channel already equals its replacement on that input (a
    channel silent for that image under a zero lesion, e.g. a ReLU below threshold at low
    contrast); such inputs keep the intact network's answer without another forward pass.
    """
    flat = acts.reshape(len(acts), acts.shape[1], -1)
    ref = torch.zeros_like(flat) if fill is None else fill.reshape(flat.shape)
    differs = (flat != ref).any(dim=2).cpu().numpy()  # (n_obs, C)
    return (np.asarray(masks, dtype=np.int64) @ differs.T.astype(np.int64)) > 0


def noop_lesions(acts: torch.Tensor, masks: np.ndarray, fill: torch.Tensor | None) -> np.ndarray:
    """(n_lesions,) bool: lesions that change nothing on any input (e.g. a dead channel)."""
    return ~changed_observations(acts, masks, fill).any(axis=1)


@torch.inference_mode()
def fill_values(acts: torch.Tensor, contrast: np.ndarray, mode: str) -> torch.Tensor | None:
    """What replaces a removed channel: None for zeros, else each obs's contrast-level mean.

    acts (n_obs, C, ...), contrast (n_obs,). For ``mode="mean"`` returns (n_obs, C, ...) where
    each row is the mean activation over the observations at that row's contrast level.
    """
    if mode not in LESION_MODES:
        raise CortexmapError(f"Lesion mode must be one of {LESION_MODES}; got {mode!r}.")
    if mode == "zero":
        return None
    contrast = np.asarray(contrast)
    fill = torch.empty_like(acts)
    for c in np.unique(contrast):
        sel = torch.from_numpy(contrast == c).to(acts.device)
        fill[sel] = acts[sel].mean(0, keepdim=True)
    return fill


# --------------------------------------------------------------------------- intact pass
INTACT_CACHE_BYTES = 2 * 1024**3  # above this, each layer caches its own output in turn


@dataclass
class IntactPass:
    """What one forward pass of the intact network records for a sweep over several layers.

    logits (n_obs, n_classes); acts {layer: layer output (n_obs, C, ...)}; preact {layer:
    (module, its output)} for the linear operation (see :class:`LinearStage`) the layer feeds.
    """

    logits: torch.Tensor
    acts: dict[str, torch.Tensor]
    preact: dict[str, tuple[nn.Module, torch.Tensor]]


@torch.inference_mode()
def _intact_pass(model: nn.Module, layers: list[str], x: torch.Tensor, traced,
                 batch_size: int = 256, max_bytes: int = INTACT_CACHE_BYTES) -> IntactPass | None:
    """Record every layer's output, the pre-activation it feeds and the logits in one pass.

    A sweep over conv1..conv5 otherwise runs conv1 five times (once per head), the first
    convolution of every tail once more, and every tail once more for the intact answers.
    Values are cloned as soon as they are computed (a later in-place ReLU must not edit them).
    ``traced``: :func:`cortexmap.models.split.trace_model` of the model (copied, not edited).
    Returns None (the caller then works per layer) when a layer is not in the graph or the
    recorded tensors would take more than ``max_bytes``.
    """

    graph, qualnames = _copy(traced)
    gm = fx.GraphModule(model, graph)
    g = gm.graph
    try:
        nodes = {layer: _layer_node(g, qualnames, layer) for layer in layers}
    except CortexmapError:  # unknown layer: split_at reports it
        return None
    lin = {}
    for layer, node in nodes.items():
        found = _stage_chain(node, gm.get_submodule)
        if found is not None:
            lin[layer] = found[1]
    captured: dict[fx.Node, fx.Node] = {}
    for n in [*nodes.values(), *lin.values()]:
        if n not in captured:
            with g.inserting_after(n):
                captured[n] = g.call_method("clone", (n,))
    output = next(n for n in g.nodes if n.op == "output")
    keys = list(captured)
    output.args = ((output.args[0], tuple(captured[k] for k in keys)),)
    gm.recompile()
    if not len(x):
        return None
    try:
        parts = [gm(x[:batch_size])]
        per_row = sum(t[0].numel() * t.element_size() for t in parts[0][1])
        if per_row * len(x) > max_bytes:
            return None
        parts += [gm(x[i : i + batch_size]) for i in range(batch_size, len(x), batch_size)]
    except Exception:  # e.g. a layer whose output is not a tensor: per layer instead
        return None
    logits = torch.cat([logits_of(p[0]) for p in parts])
    vals = {k: _same_layout(torch.cat([p[1][j] for p in parts])) for j, k in enumerate(keys)}
    return IntactPass(
        logits=logits,
        acts={layer: vals[n] for layer, n in nodes.items()},
        preact={layer: (model.get_submodule(n.target), vals[n]) for layer, n in lin.items()},
    )


# --------------------------------------------------------------------------- naive reference
@torch.inference_mode()
def naive_lesion_correct(
    model: nn.Module, layer: str, x: torch.Tensor, labels: torch.Tensor, masks: np.ndarray,
    batch_size: int = 256,
) -> np.ndarray:
    """Reference implementation: a full forward pass per lesion with a hook zeroing channels.

    x (n_obs, 3, S, S) model inputs. Returns (n_lesions, n_obs) bool. Used by tests (the fast
    engine must agree) and by the benchmark (the peer the speed-up is measured against).
    """
    module = model.get_submodule(layer)
    current: dict[str, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        keep = (~current["mask"]).to(out.dtype).view((1, -1) + (1,) * (out.ndim - 2))
        return out * keep

    rows = []
    with forward_hooks({module: hook}):
        for mask in np.asarray(masks):
            current["mask"] = torch.from_numpy(mask).to(x.device)
            rows.append(predict(model, x, batch_size) == labels.cpu().numpy())
    return np.stack(rows)


# --------------------------------------------------------------------------- the sweep
@dataclass
class LesionSweep:
    """Result of :func:`lesion_sweep` (long tables; one row per lesion x contrast [x class]).

    table: columns layer, lesion, kernels, kind ("kernel" | "set"), n_removed, contrast, class
    ("all" or a class name), accuracy, baseline_accuracy, drop (= baseline - lesioned),
    n_images. baseline: columns layer, contrast, class, accuracy, n_images.
    """

    table: pd.DataFrame
    baseline: pd.DataFrame
    n_channels: dict[str, int] = field(default_factory=dict)

    def drops(self, kind: str = "kernel") -> pd.DataFrame:
        """Overall (all classes) rows of one kind of lesion."""
        t = self.table
        return t[(t["kind"] == kind) & (t["class"] == "all")].reset_index(drop=True)

    def per_class(self, kind: str = "kernel") -> pd.DataFrame:
        t = self.table
        return t[(t["kind"] == kind) & (t["class"] != "all")].reset_index(drop=True)

    def matrix(self, layer: str, kind: str = "kernel") -> pd.DataFrame:
        """kernels x contrast matrix of accuracy drops for ``layer`` (highest contrast first)."""
        d = self.drops(kind)
        d = d[d["layer"] == layer]
        m = d.pivot(index="lesion", columns="contrast", values="drop")
        m = m[sorted(m.columns, reverse=True)]
        order = sorted(m.index, key=lambda s: [int(k) for k in s.split("+")])
        return m.loc[order]


def combine_sweeps(sweeps: Sequence[LesionSweep]) -> LesionSweep:
    """Pool sweeps run on disjoint image sets into one (accuracies weighted by image counts)."""

    def pool(frames: list[pd.DataFrame], keys: list[str], cols: list[str]) -> pd.DataFrame:
        df = pd.concat(frames, ignore_index=True)
        order = list(df.columns)
        df[cols] = df[cols].mul(df["n_images"], axis=0)
        g = df.groupby(keys, sort=False)[[*cols, "n_images"]].sum().reset_index()
        g[cols] = g[cols].div(g["n_images"], axis=0)
        return g[[c for c in order if c in g]]

    table = pool([s.table for s in sweeps],
                 ["layer", "lesion", "kernels", "kind", "n_removed", "contrast", "class"],
                 ["accuracy", "baseline_accuracy"])
    table["drop"] = table["baseline_accuracy"] - table["accuracy"]
    base = pool([s.baseline for s in sweeps], ["layer", "contrast", "class"], ["accuracy"])
    return LesionSweep(table, base, dict(sweeps[0].n_channels))


def _fingerprint(model: nn.Module, x: torch.Tensor, labels: np.ndarray, contrast: np.ndarray,
                 layer: str, masks: np.ndarray, mode: str, per_class: bool) -> str:
    """Hash of everything a layer's result depends on, so resume never mixes runs."""
    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for arr in (x.cpu().numpy(), labels, contrast, masks):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([layer, mode, per_class]).encode())
    return h.hexdigest()[:24]


def _layer_file(resume_dir: Path, layer: str) -> Path:
    return resume_dir / f"layer_{layer.replace('/', '_')}"


def _summarise(
    layer: str, correct: np.ndarray, base_correct: np.ndarray, names: list[str],
    kernel_lists: list[list[int]], kind: str, contrast: np.ndarray, labels: np.ndarray,
    per_class: bool, class_names: Sequence[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Correctness matrices -> the long lesion table and the baseline table of one layer.

    Accuracies of every lesion in every (contrast, class) cell come from one matrix product
    correct (n_lesions, n_obs) @ indicator (n_obs, n_cells), not a pandas group-by per lesion.
    """
    cells: list[tuple[float, str, np.ndarray]] = []
    classes = np.unique(labels) if per_class else []
    for c in sorted(np.unique(contrast), reverse=True):
        at_c = contrast == c
        cells.append((float(c), "all", at_c))
        for lab in classes:
            name = class_names[int(lab)] if class_names is not None else str(lab)
            cells.append((float(c), name, at_c & (labels == lab)))
    indicator = np.stack([sel for *_, sel in cells], axis=1).astype(np.float64)
    counts = indicator.sum(0)
    acc = correct.astype(np.float64) @ indicator / counts  # (n_lesions, n_cells)
    base_acc = base_correct.astype(np.float64) @ indicator / counts  # (n_cells,)
    cell_c = np.array([c for c, _, _ in cells])
    cell_k = [k for _, k, _ in cells]
    base = pd.DataFrame({"layer": layer, "contrast": cell_c, "accuracy": base_acc,
                         "n_images": counts.astype(int), "class": cell_k})
    n_les, n_cells = acc.shape
    table = pd.DataFrame({
        "layer": layer,
        "lesion": np.repeat(names, n_cells),
        "kernels": np.repeat(names, n_cells),
        "kind": kind,
        "n_removed": np.repeat([len(k) for k in kernel_lists], n_cells),
        "contrast": np.tile(cell_c, n_les),
        "accuracy": acc.ravel(),
        "n_images": np.tile(counts.astype(int), n_les),
        "class": np.tile(cell_k, n_les),
        "baseline_accuracy": np.tile(base_acc, n_les),
    })
    table["drop"] = table["baseline_accuracy"] - table["accuracy"]
    return table, base


def lesion_sweep(
    model: nn.Module,
    layers: Sequence[str],
    images_by_contrast: Mapping[float, np.ndarray],
    labels: np.ndarray,
    kernels: Mapping[str, Sequence[int]] | None = None,
    lesion_sets: Mapping[str, Sequence[Sequence[int]]] | None = None,
    mode: str = "zero",
    per_class: bool = False,
    class_names: Sequence[str] | None = None,
    batch_lesions: int | None = None,
    max_batch: int = 512,
    client=None,
    resume_dir: str | Path | None = None,
    progress: bool = True,
) -> LesionSweep:
    """Lesion kernels of each layer and measure accuracy at every contrast level.

    model: classifier in eval mode; layers: names accepted by :func:`split_at` (e.g. "conv1").
    images_by_contrast: {contrast in (0, 1]: images (n, H, W, 3)}, the same n test images at each
    level (see :func:`cortexmap.probes.contrast.contrast_series`); labels (n,) int class indices.
    kernels: {layer: kernel indices} to lesion one at a time (default: every kernel).
    lesion_sets: {layer: [[k1, k2, ...], ...]} multi-kernel lesions removed together; when given,
    only these sets are evaluated for that layer unless ``kernels`` also names it.
    mode: "zero" or "mean" (replace by the channel's mean at the same contrast level).
    per_class: also report accuracy per class (``class_names`` label the classes).
    client: a ``dask.distributed.Client`` to spread chunks of lesions over its workers.
    resume_dir: folder where each finished layer is written atomically and reused on re-run.
    """

    if mode not in LESION_MODES:
        raise CortexmapError(f"Lesion mode must be one of {LESION_MODES}; got {mode!r}.")
    if not layers:
        raise CortexmapError("No layers to lesion; name at least one, e.g. layers=['conv1'].")
    check_contrasts(list(images_by_contrast))
    images, lab, con, _ = stack_contrasts(images_by_contrast, labels)
    device = next(model.parameters()).device
    x = model_input(model, images).to(device)
    lab_t = torch.as_tensor(lab, dtype=torch.long)
    model.eval()
    resume = Path(resume_dir) if resume_dir is not None else None
    sets_by_layer = dict(lesion_sets or {})
    tables, baselines, n_channels = [], [], {}

    # one forward pass of the intact network records every layer's output, the pre-activation
    # of the linear operation each feeds, and the intact answers (None: per layer, as below)
    try:
        traced = trace_model(model)
    except CortexmapError:
        traced = None  # split_at below reports it
    intact = None if traced is None else _intact_pass(model, list(layers), x, traced)
    for layer in track(list(layers), "kernel lesions (layers)", enabled=progress):
        if intact is not None:  # no head needed, and no second trace
            tail = tail_at(model, layer, traced)
            acts = intact.acts[layer]
        else:
            head, tail = split_at(model, layer)
            with torch.inference_mode():
                acts = _same_layout(layer_output(head, x, batch_size=256))
        if acts.ndim < 2:
            raise CortexmapError(f"Layer {layer!r} output has no channel axis; choose another.")
        n_ch = int(acts.shape[1])
        _check_channels(n_ch, f"Layer {layer!r}")
        n_channels[layer] = n_ch
        kernel_lists: list[list[int]] = []
        kinds: list[str] = []
        if layer not in sets_by_layer or (kernels and layer in kernels):
            ks = None if not kernels or layer not in kernels else kernels[layer]
            single = kernel_masks(n_ch, ks)
            kernel_lists += [[int(np.flatnonzero(r)[0])] for r in single]
            kinds += ["kernel"] * len(single)
        for s in sets_by_layer.get(layer, []):
            kernel_lists.append([int(k) for k in _check_kernels(s, n_ch)])
            kinds.append("set")
        masks = set_masks(n_ch, kernel_lists)
        stem = _layer_file(resume, layer) if resume is not None else None
        fp = "" if stem is None else _fingerprint(model, x, lab, con, layer, masks, mode,
                                                  per_class)
        if stem is not None and _resumable(stem, fp):
            tables.append(pd.read_parquet(stem.with_suffix(".parquet")))
            baselines.append(pd.read_parquet(Path(f"{stem}_baseline.parquet")))
            continue

        fill = fill_values(acts, con, mode)
        if intact is not None:
            base_correct = (intact.logits.argmax(1).cpu() == lab_t).numpy()
        else:
            with torch.inference_mode():  # clone: a tail starting in-place must not edit acts
                base_correct = (
                    torch.cat([logits_of(tail(acts[i : i + max_batch].clone())).argmax(1).cpu()
                               for i in range(0, len(acts), max_batch)]) == lab_t
                ).numpy()
        correct = _evaluate(tail, acts, lab_t, masks, fill, batch_lesions, max_batch, client,
                            progress and client is None, layer, base_correct,
                            None if intact is None else intact.preact.get(layer))
        names = [lesion_name(k) for k in kernel_lists]
        frames, bases = [], []
        for kind in ("kernel", "set"):
            sel = [i for i, k in enumerate(kinds) if k == kind]
            if not sel:
                continue
            t, b = _summarise(layer, correct[sel], base_correct, [names[i] for i in sel],
                              [kernel_lists[i] for i in sel], kind, con, lab, per_class,
                              class_names)
            frames.append(t)
            bases.append(b)
        table, base = pd.concat(frames, ignore_index=True), bases[0]
        if stem is not None:
            write_table(base, Path(f"{stem}_baseline"))
            write_table(table, stem)
            write_json(Path(f"{stem}.json"), {"fingerprint": fp, "layer": layer})
        tables.append(table)
        baselines.append(base)
    return LesionSweep(pd.concat(tables, ignore_index=True),
                       pd.concat(baselines, ignore_index=True), n_channels)


def _resumable(stem: Path, fp: str) -> bool:
    meta = Path(f"{stem}.json")
    if not (meta.exists() and stem.with_suffix(".parquet").exists()
            and Path(f"{stem}_baseline.parquet").exists()):
        return False
    return json.loads(meta.read_text()).get("fingerprint") == fp


def _evaluate(tail, acts, labels, masks, fill, batch_lesions, max_batch, client, progress,
              layer, base_correct, z_cached=None) -> np.ndarray:
    """Run :func:`lesion_correct` in-process (in chunks, with progress) or over Dask workers.

    Inputs a lesion does not change (:func:`changed_observations`) keep the intact network's
    correctness without a forward pass. ``z_cached``: (module, its output on ``acts``) from
    :func:`_intact_pass`, used as the :class:`LinearStage` pre-activation when it is that
    stage's module.
    """
    out = np.repeat(base_correct[None, :], len(masks), axis=0)
    changed = changed_observations(acts, masks, fill)
    active = np.flatnonzero(changed.any(axis=1))
    if not len(active):
        return out
    todo, changed = masks[active], changed[active]
    stage = linear_stage(tail)
    if stage is not None and not stage.applies_to(acts):
        stage = None
    if stage is None:
        z = None
    elif z_cached is not None and z_cached[0] is stage.conv:
        z = z_cached[1]  # computed by the intact pass over all layers
    else:
        z = _same_layout(stage.preactivation(acts, batch_size=max_batch))
    n_les = len(todo)
    if client is None:
        step = max(batch_lesions or 1, 1) * 8
        starts = list(range(0, n_les, step))
        parts = [lesion_correct(tail, acts, labels, todo[i : i + step], fill, batch_lesions,
                                max_batch, stage, z, changed[i : i + step], base_correct)
                 for i in track(starts, f"{layer}: lesions", enabled=progress)]
    else:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        n_chunks = min(n_les, n_workers * 2)  # two chunks per worker balances uneven speeds
        bounds = np.linspace(0, n_les, n_chunks + 1).astype(int)
        # Tensors and modules travel to the workers once (scatter), not once per task. Keys
        # are unique (hash=False): with content-hashed keys, equal data scattered for the next
        # layer (labels, None) reuses a key the previous layer is releasing ("lost
        # dependencies"); None is passed as is.
        items = [tail, acts.clone(), labels, None if fill is None else fill.clone(), stage,
                 None if z is None else z.clone()]
        sent = iter(client.scatter([v for v in items if v is not None], broadcast=True,
                                   hash=False))
        tail_f, acts_f, labels_f, fill_f, stage_f, z_f = [
            None if v is None else next(sent) for v in items]
        futures = [
            client.submit(_chunk_task, tail_f, acts_f, labels_f, todo[a:b], fill_f,
                          batch_lesions, max_batch, stage_f, z_f, changed[a:b], base_correct,
                          pure=False)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a
        ]
        parts = client.gather(futures)
    out[active] = np.concatenate(parts)
    return out


# --------------------------------------------------------------------------- which kernels matter
def low_contrast_levels(
    baseline: pd.DataFrame, chance: float, low_contrast_max: float | None = None
) -> list[float]:
    """The contrast levels that count as "low" when ranking kernels.

    baseline: the intact network's accuracy per contrast (columns contrast, accuracy; rows with a
    ``class`` other than "all" are ignored). With ``low_contrast_max`` the low levels are all
    levels <= it. Otherwise (auto) they follow the network's own psychometric curve: the levels
    below full contrast where the intact accuracy is in the curve's dynamic range, between
    chance + 20 % and chance + 90 % of the full-contrast gain (a lesion cannot push accuracy
    below chance, so levels already at chance carry no information). If none qualifies, the
    lowest level still >= chance + 20 % is used, and failing that the levels <= 10 %.
    """
    b = baseline
    if "class" in b:
        b = b[b["class"] == "all"]
    acc = b.groupby("contrast")["accuracy"].mean().sort_index()
    levels = list(acc.index)
    if low_contrast_max is not None:
        low = [float(c) for c in levels if c <= low_contrast_max + 1e-12]
        if not low:
            raise CortexmapError(
                f"No contrast level is <= low_contrast_max={low_contrast_max}; add lower levels "
                f"or raise it (levels: {levels})."
            )
        return low
    top_c = max(levels)
    gain = float(acc[top_c]) - chance
    below = acc[acc.index < top_c]
    frac = (below - chance) / gain if gain > 0 else below * 0
    band = [float(c) for c in below.index if 0.2 <= frac[c] <= 0.9]
    if band:
        return band
    above = [float(c) for c in below.index if frac[c] >= 0.2]
    if above:
        return [min(above)]
    return [float(c) for c in levels if c <= 0.1 + 1e-12] or [float(min(levels))]


def top_low_contrast_kernels(
    drops: pd.DataFrame, n_top: int = 5, low_levels: Sequence[float] = (0.1, 0.05, 0.03, 0.01)
) -> pd.DataFrame:
    """The ``n_top`` kernels per layer whose removal hurts low-contrast images most.

    drops: single-kernel rows of :class:`LesionSweep` (``sweep.drops()``). low_levels: the
    contrast levels that count as low (see :func:`low_contrast_levels`); high contrast = the
    highest level. Ties break by the mean drop over all levels, then by kernel index. Returns
    per layer and rank: kernel, low_contrast_drop (mean drop over the low levels),
    high_contrast_drop, specificity (= low - high), and the kernel's share of the layer's summed
    low-contrast drop.
    """
    levels = sorted(drops["contrast"].unique())
    low = [c for c in levels if any(abs(c - x) < 1e-9 for x in low_levels)]
    if not low:
        raise CortexmapError(
            f"None of the low contrast levels {list(low_levels)} was measured (levels: "
            f"{levels}); choose low levels among the measured ones."
        )
    high = max(levels)
    rows = []
    for layer, d in drops.groupby("layer", sort=False):
        lowd = d[d["contrast"].isin(low)].groupby("lesion")["drop"].mean()
        highd = d[d["contrast"] == high].set_index("lesion")["drop"]
        total = float(lowd.clip(lower=0).sum())
        # ties (common: many kernels change nothing) break by the drop over all contrasts,
        # then by kernel index
        order = pd.DataFrame({"low": lowd, "all": d.groupby("lesion")["drop"].mean(),
                              "k": [int(i) for i in lowd.index]}, index=lowd.index)
        order = order.sort_values(["low", "all", "k"], ascending=[False, False, True])
        ranked = order["low"].head(n_top)
        for rank, (lesion, val) in enumerate(ranked.items(), start=1):
            rows.append({
                "layer": layer, "rank": rank, "kernel": int(lesion),
                "low_contrast_drop": float(val), "high_contrast_drop": float(highd[lesion]),
                "specificity": float(val - highd[lesion]),
                "share_of_low_contrast_drop": float(max(val, 0) / total) if total > 0 else 0.0,
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- what they look like
def first_layer_conv(model: nn.Module, layer: str) -> nn.Conv2d | None:
    """The Conv2d that reads the image if ``layer`` is (or contains) the network's first conv."""
    module = model.get_submodule(layer)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if convs and convs[0] is first and first.in_channels == 3:
        return first
    return None


def kernel_rgb(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """First-layer weights (C, 3, kh, kw) -> RGB images (C, kh, kw, 3) in [0, 1], grey = 0."""
    w = np.asarray(weight.detach().cpu() if isinstance(weight, torch.Tensor) else weight,
                   dtype=np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise CortexmapError(f"Expected first-layer weights (C, 3, kh, kw); got {w.shape}.")
    scale = np.abs(w).reshape(len(w), -1).max(1)[:, None, None, None]
    return (0.5 + 0.5 * w / np.maximum(scale, 1e-12)).transpose(0, 2, 3, 1)


def preferred_gratings(
    model: nn.Module,
    layer: str,
    kernels: Sequence[int],
    orientations_deg: Sequence[float] = tuple(np.arange(0, 180, 15.0)),
    spatial_freqs_cpi: Sequence[float] | None = None,
    phases_deg: Sequence[float] = (0, 90, 180, 270),
    size: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Each kernel's preferred full-contrast grating (the grating that drives it most).

    Response = the channel's activation averaged over space, maximised over phase. Returns a table
    (kernel, orientation_deg, spatial_freq_cpi, phase_deg, response, tuning_depth = (max - mean)
    / max over orientation x frequency) and the preferred grating images (n_kernels, S, S, 3).
    Default spatial frequencies: S/32, S/16, S/8 and S/4 cycles per image (2-16 at 64 px).
    """

    size = size or input_size_of(model, default=64)
    if spatial_freqs_cpi is None:
        spatial_freqs_cpi = [size / 32, size / 16, size / 8, size / 4]
    ori = np.sort(np.asarray(orientations_deg, dtype=float))
    sfs = np.sort(np.asarray(spatial_freqs_cpi, dtype=float))
    phs = np.sort(np.asarray(phases_deg, dtype=float))
    stim = gratings(ori, sfs, phs, contrast=1.0, size=size)
    head, _ = split_at(model, layer)
    with torch.inference_mode():
        acts = layer_output(head, model_input(model, stim.images), batch_size=128)
    flat = acts.reshape(acts.shape[0], acts.shape[1], -1).mean(-1).numpy()  # (n_stim, C)
    resp = grating_responses(stim, flat, ori, sfs, phs)  # (n_ori, n_sf, n_phase, C)
    meta = stim.metadata.reset_index(drop=True)
    rows, imgs = [], []
    for k in kernels:
        r = resp[..., int(k)]
        by_of = r.max(axis=2)  # best phase per orientation x frequency
        oi, si = np.unravel_index(int(np.argmax(by_of)), by_of.shape)
        pi = int(np.argmax(r[oi, si]))
        peak = float(by_of[oi, si])
        idx = int(np.flatnonzero(
            np.isclose(meta["orientation_deg"], ori[oi]) & np.isclose(meta["spatial_freq_cpi"],
            sfs[si]) & np.isclose(meta["phase_deg"], phs[pi]))[0])
        rows.append({"kernel": int(k), "orientation_deg": float(ori[oi]),
                     "spatial_freq_cpi": float(sfs[si]), "phase_deg": float(phs[pi]),
                     "response": peak,
                     "tuning_depth": float((peak - by_of.mean()) / peak) if peak > 0 else 0.0})
        imgs.append(stim.images[idx])
    return pd.DataFrame(rows), np.stack(imgs)


# --------------------------------------------------------------------------- figures
def plot_drop_heatmap(matrix: pd.DataFrame, layer: str, max_kernels: int = 256):
    """Heat map of a kernels x contrast drop matrix (rows kernels, columns contrast levels)."""
    import matplotlib.pyplot as plt

    m = matrix.iloc[:max_kernels]
    height = min(12.0, 2.8 + 0.12 * len(m))
    fig, ax = plt.subplots(figsize=(4.8, height))
    lim = max(float(np.abs(m.to_numpy()).max()), 1e-3)
    im = ax.imshow(m.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   interpolation="nearest")
    ax.set_xticks(range(m.shape[1]), [f"{100 * c:g}%" for c in m.columns], rotation=45)
    step = max(1, len(m) // 16)
    ax.set_yticks(range(0, len(m), step), list(m.index[::step]))
    ax.set_xlabel("contrast")
    ax.set_ylabel("lesioned kernel")
    ax.set_title(f"{layer}: accuracy drop")
    fig.colorbar(im, ax=ax, label="accuracy drop (baseline - lesioned)", shrink=0.6)
    fig.tight_layout()
    return fig


def plot_images(images: np.ndarray, titles: Sequence[str], suptitle: str = ""):
    """A row of small RGB images (kernel weights or preferred gratings) with titles."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.9), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig

"""Receptive fields of feature-map positions, in image (model-input) pixel coordinates.

Two methods, chosen with ``method``:

* ``"analytic"`` -- composes kernel size, stride, padding and dilation of every ``Conv2d``,
  ``MaxPool2d`` and ``AvgPool2d`` on the way to the layer (the classic recursion
  ``jump_out = jump_in * stride``, ``size_out = size_in + (k_eff - 1) * jump_in``,
  ``start_out = start_in + ((k_eff - 1) / 2 - padding) * jump_in``). Exact for networks whose
  modules run as one chain up to the layer (AlexNet, VGG, the zoo nets, a ResNet's first
  stage). Shape-preserving modules (ReLU, BatchNorm, Dropout, ...) are transparent. The
  centre reported is the centre of the part of the theoretical receptive field that lies
  inside the image (zero padding adds nothing a unit can see).
* ``"gradient"`` -- measured: the gradient of the channel-summed activation at a position with
  respect to the input, accumulated in absolute value over a few random inputs. The centre is
  the centroid of that gradient-magnitude profile (the *effective* receptive field centre,
  Luo et al. 2016), the size is the extent of its support (the theoretical receptive field
  clipped to the image), and ``effective_sigma`` is its standard deviation. Works for any
  differentiable architecture (branches, skip connections). Conv nets are translation
  equivariant along each axis, so a position's row profile depends only on its row index and
  its column profile only on its column index; one probe per row and one per column
  (``h + w`` backward passes, batched) therefore give every position.
* ``"auto"`` (default) -- analytic when the modules form a chain, checked against the gradient
  support of the centre position; otherwise gradient.

Coordinates: pixel centres are integers, ``(0, 0)`` is the top-left pixel, the image centre is
``((H - 1) / 2, (W - 1) / 2)``. Eccentricity is the distance of a receptive-field centre from
the image centre divided by half the shorter image side (1.0 = the middle of an image edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import capture, run_with_hooks
from cortexmap.models.layers import device_of, resolve_layers, spatial_layers
from cortexmap.models.preprocessing import input_size_of

_METHODS = ("auto", "analytic", "gradient")


@dataclass(frozen=True)
class ReceptiveFields:
    """Receptive fields of every position of one layer's feature map.

    Attributes
    ----------
    layer: layer name.
    input_size: (H, W) of the model input in pixels.
    grid: (h, w) of the layer's feature map.
    centers: (h, w, 2) float64, receptive-field centre (row, col) in input pixels.
    size: (h, w, 2) float64, receptive-field extent (rows, cols) in pixels; for ``analytic`` the
        full theoretical size (may reach into the padding), for ``gradient`` the in-image support.
    jump: (row, col) distance in input pixels between neighbouring positions.
    method: "analytic" or "gradient" (what was actually used).
    effective_sigma: (h, w, 2) standard deviation of the gradient profile (gradient method),
        NaN for the analytic method.
    """

    layer: str
    input_size: tuple[int, int]
    grid: tuple[int, int]
    centers: np.ndarray
    size: np.ndarray
    jump: tuple[float, float]
    method: str
    effective_sigma: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def image_center(self) -> np.ndarray:
        """(2,) image centre (row, col) in pixel coordinates."""
        return (np.asarray(self.input_size, dtype=np.float64) - 1.0) / 2.0

    def eccentricity(self) -> np.ndarray:
        """(h, w) distance of each centre from the image centre / (min(H, W) / 2)."""
        d = self.centers - self.image_center
        return np.hypot(d[..., 0], d[..., 1]) / (min(self.input_size) / 2.0)

    def centers_normalized(self) -> np.ndarray:
        """(h, w, 2) centres as fractions of image height/width (0 = top/left, 1 = bottom/right).

        Use these to place receptive fields on images of another size.
        """
        return (self.centers + 0.5) / np.asarray(self.input_size, dtype=np.float64)

    def to_frame(self):
        """One row per position: row, col, center_y, center_x, size_y, size_x, eccentricity."""
        import pandas as pd

        h, w = self.grid
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return pd.DataFrame({
            "layer": self.layer, "row": rows.ravel(), "col": cols.ravel(),
            "center_y": self.centers[..., 0].ravel(), "center_x": self.centers[..., 1].ravel(),
            "size_y": self.size[..., 0].ravel(), "size_x": self.size[..., 1].ravel(),
            "eccentricity": self.eccentricity().ravel(), "method": self.method,
        })


# --------------------------------------------------------------------------------------------
# Layer access


def _input_size(model: nn.Module, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if input_size is None:
        input_size = input_size_of(model)
    if isinstance(input_size, int):
        return (int(input_size), int(input_size))
    h, w = input_size
    return (int(h), int(w))


def _module(model: nn.Module, layer: str) -> nn.Module:
    resolve_layers(model, [layer])  # unknown name: error with close matches and valid names
    return dict(model.named_modules())[layer]


def _check_spatial(layer: str, shape: tuple[int, ...], model: nn.Module, size) -> None:
    if len(shape) != 4:
        conv = spatial_layers(model, size[0])
        raise CortexmapError(
            f"Layer {layer!r} is not convolutional: its output has shape {tuple(shape[1:])} "
            "without a spatial (h, w) grid, so its units have no receptive-field position. "
            f"Choose a layer with a feature map, e.g. one of: {', '.join(conv[:30])}."
        )


# --------------------------------------------------------------------------------------------
# Analytic method


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _geometry(mod: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """(kernel, stride, padding, dilation) per axis for spatial modules, else None."""
    if isinstance(mod, nn.Conv2d):
        k, s, d = _pair(mod.kernel_size), _pair(mod.stride), _pair(mod.dilation)
        if isinstance(mod.padding, str):  # "same" pads (k_eff - 1) // 2 before, "valid" none
            p = tuple((d[a] * (k[a] - 1)) // 2 if mod.padding == "same" else 0 for a in (0, 1))
        else:
            p = _pair(mod.padding)
        return k, s, p, d
    if isinstance(mod, nn.MaxPool2d):
        k, p, d = _pair(mod.kernel_size), _pair(mod.padding), _pair(mod.dilation)
        return k, _pair(mod.stride if mod.stride is not None else mod.kernel_size), p, d
    if isinstance(mod, nn.AvgPool2d):
        k, p = _pair(mod.kernel_size), _pair(mod.padding)
        return k, _pair(mod.stride if mod.stride is not None else mod.kernel_size), p, (1, 1)
    return None


def _trace(model: nn.Module, layer: str, size: tuple[int, int]):
    """Run one forward pass; return the leaf modules called before ``layer``'s output, in order.

    Each entry: (name, module, input shape, output shape). Also returns the layer's output shape.
    """
    target = _module(model, layer)
    events: list = []
    out_shape: list[tuple[int, ...]] = []

    def stop_hook(_m, _i, out):
        if not out_shape and isinstance(out, torch.Tensor):
            out_shape.append(tuple(out.shape))

    hooks = []
    for name, mod in model.named_modules():
        if mod is not target and not any(True for _ in mod.children()):

            def hook(m, inputs, out, name=name):
                if out_shape or not inputs or not isinstance(inputs[0], torch.Tensor):
                    return
                if isinstance(out, torch.Tensor):
                    events.append((name, m, tuple(inputs[0].shape), tuple(out.shape)))

            hooks.append((mod, hook))
    if not any(True for _ in target.children()):
        # A leaf target is itself part of the chain: record it, then its output shape.
        def leaf_hook(m, inputs, out):
            if not out_shape and isinstance(out, torch.Tensor):
                events.append((layer, m, tuple(inputs[0].shape), tuple(out.shape)))
                out_shape.append(tuple(out.shape))

        hooks.append((target, leaf_hook))
    else:
        hooks.append((target, stop_hook))
    run_with_hooks(model, torch.zeros(1, 3, *size, device=device_of(model)), hooks,
                   eval_mode=True)
    if not out_shape:
        raise CortexmapError(
            f"Layer {layer!r} was not called in the model's forward pass; choose a layer that "
            "the forward pass uses."
        )
    return events, out_shape[0]


def _analytic(model: nn.Module, layer: str, size: tuple[int, int]):
    """Return (centers, sizes, jump, grid) or None when the modules do not form a chain."""
    events, out_shape = _trace(model, layer, size)
    _check_spatial(layer, out_shape, model, size)
    state = (3, *size)  # running (C, h, w)
    start = [0.0, 0.0]
    jump = [1.0, 1.0]
    rf = [1.0, 1.0]
    for _name, mod, in_shape, o_shape in events:
        if len(in_shape) != 4 or len(o_shape) != 4:
            return None  # flattening before the layer: not a conv chain
        if in_shape[1:] != state:
            return None  # this module reads something other than the chain's last output
        geo = _geometry(mod)
        if geo is not None:
            k, s, p, d = geo
            for a in (0, 1):
                k_eff = d[a] * (k[a] - 1) + 1
                start[a] += ((k_eff - 1) / 2.0 - p[a]) * jump[a]
                rf[a] += (k_eff - 1) * jump[a]
                jump[a] *= s[a]
        elif o_shape[2:] != in_shape[2:]:
            return None  # unknown module that resamples space (adaptive pool, upsampling, ...)
        state = o_shape[1:]
    if out_shape[1:] != state:
        return None
    h, w = out_shape[2], out_shape[3]
    centers = np.empty((h, w, 2))
    sizes = np.empty((h, w, 2))
    for a, n in ((0, h), (1, w)):
        c = start[a] + np.arange(n) * jump[a]
        lo = np.clip(c - (rf[a] - 1) / 2.0, 0, size[a] - 1)
        hi = np.clip(c + (rf[a] - 1) / 2.0, 0, size[a] - 1)
        mid = (lo + hi) / 2.0  # centre of the in-image part of the receptive field
        if a == 0:
            centers[..., 0] = mid[:, None]
        else:
            centers[..., 1] = mid[None, :]
        sizes[..., a] = rf[a]
    return centers, sizes, (jump[0], jump[1]), (h, w), start, rf


# --------------------------------------------------------------------------------------------
# Gradient method


def _layer_output_fn(model: nn.Module, layer: str):
    """Function x -> layer output (with gradients), via a forward hook on the named module."""
    target = _module(model, layer)

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = capture(model, x, {layer: target}, grad=True).get(layer)
        if out is None:
            raise CortexmapError(f"Layer {layer!r} was not called in the forward pass.")
        return out

    return fn


def _gradient_profiles(
    model: nn.Module, layer: str, size: tuple[int, int], positions: list[tuple[int, int]],
    n_probes: int, seed: int, batch_size: int,
) -> np.ndarray:
    """(len(positions), H, W) accumulated |d sum_c out[c, i, j] / d input| over random probes."""
    fn = _layer_output_fn(model, layer)
    gen = torch.Generator().manual_seed(seed)
    maps = np.zeros((len(positions), *size))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for _ in range(n_probes):
                base = torch.randn(1, 3, *size, generator=gen).to(device_of(model))
                for b0 in range(0, len(positions), batch_size):
                    pos = positions[b0:b0 + batch_size]
                    x = base.repeat(len(pos), 1, 1, 1).requires_grad_(True)
                    out = fn(x)
                    rows = torch.tensor([p[0] for p in pos], device=x.device)
                    cols = torch.tensor([p[1] for p in pos], device=x.device)
                    # Each batch item is independent (eval mode), so one backward of the sum
                    # gives every position's own input gradient.
                    sel = out[torch.arange(len(pos), device=x.device), :, rows, cols]
                    (grad,) = torch.autograd.grad(sel.sum(), x)
                    maps[b0:b0 + len(pos)] += grad.abs().sum(1).double().cpu().numpy()
    finally:
        model.train(was_training)
    return maps


def _profile_stats(profile: np.ndarray) -> tuple[float, float, float, float]:
    """(centroid, support extent, std, first supported index) of a non-negative 1-D profile."""
    idx = np.arange(profile.size, dtype=np.float64)
    total = profile.sum()
    if total <= 0:
        return np.nan, 0.0, np.nan, np.nan
    c = float((idx * profile).sum() / total)
    nz = np.flatnonzero(profile > total * 1e-12)
    extent = float(nz[-1] - nz[0] + 1)
    sigma = float(np.sqrt(((idx - c) ** 2 * profile).sum() / total))
    return c, extent, sigma, float(nz[0])


def _jump(first: np.ndarray, centers: np.ndarray, size: int) -> float:
    """Stride in pixels: from support edges not clipped by the image border, else centres."""
    if first.size < 2:
        return float(size)
    ok = (first[1:] > 0) & (first[:-1] > 0)
    diffs = np.diff(first)[ok] if ok.any() else np.diff(centers)
    return float(np.median(diffs))


def _gradient(model, layer, size, grid, n_probes, seed, batch_size):
    h, w = grid
    positions = [(i, w // 2) for i in range(h)] + [(h // 2, j) for j in range(w)]
    maps = _gradient_profiles(model, layer, size, positions, n_probes, seed, batch_size)
    centers = np.empty((h, w, 2))
    sizes = np.empty((h, w, 2))
    sigma = np.empty((h, w, 2))
    first = np.empty((2, max(h, w)))
    for i in range(h):
        c, e, s, f = _profile_stats(maps[i].sum(1))  # row profile of position (i, w // 2)
        centers[i, :, 0], sizes[i, :, 0], sigma[i, :, 0], first[0, i] = c, e, s, f
    for j in range(w):
        c, e, s, f = _profile_stats(maps[h + j].sum(0))  # column profile of position (h // 2, j)
        centers[:, j, 1], sizes[:, j, 1], sigma[:, j, 1], first[1, j] = c, e, s, f
    if np.isnan(centers).any():
        raise CortexmapError(
            f"Layer {layer!r}: some positions have zero input gradient for every probe input "
            "(dead units), so their receptive field cannot be measured; use method='analytic' "
            "or more probes (n_probes)."
        )
    jump = (_jump(first[0, :h], centers[:, 0, 0], size[0]),
            _jump(first[1, :w], centers[0, :, 1], size[1]))
    return centers, sizes, jump, sigma


def receptive_fields(
    model: nn.Module,
    layer: str,
    input_size: int | tuple[int, int] | None = None,
    method: str = "auto",
    n_probes: int = 4,
    seed: int = 0,
    batch_size: int = 64,
) -> ReceptiveFields:
    """Receptive field centre and size of every position of ``layer``'s feature map.

    Parameters
    ----------
    model: a torch module taking (n, 3, H, W) images.
    layer: module name (``dict(model.named_modules())`` key), e.g. ``"conv3"`` or ``"features.6"``.
    input_size: H (square) or (H, W); default ``model.cortexmap_preprocessing.size`` or 224.
    method: "auto" | "analytic" | "gradient" (see module docstring).
    n_probes: random inputs over which gradient magnitudes are accumulated (gradient method).
    seed: seed of the random probe inputs.
    batch_size: positions per backward pass (gradient method).

    Returns
    -------
    ReceptiveFields with ``centers`` and ``size`` of shape (h, w, 2).
    """
    if method not in _METHODS:
        raise CortexmapError(f"Unknown receptive-field method {method!r}; use one of {_METHODS}.")
    size = _input_size(model, input_size)
    analytic = _analytic(model, layer, size)
    if method == "analytic" and analytic is None:
        raise CortexmapError(
            f"Layer {layer!r}: the modules before it do not form a single chain of "
            "convolutions/pools (branches, skip connections or resampling), so the analytic "
            "receptive field is undefined; use method='gradient' (or 'auto')."
        )
    if analytic is not None and method in ("auto", "analytic"):
        centers, sizes, jump, grid, start, rf = analytic
        if method == "analytic" or _support_within(model, layer, size, grid, start, jump, rf, seed):
            return ReceptiveFields(
                layer=layer, input_size=size, grid=grid, centers=centers, size=sizes,
                jump=jump, method="analytic", effective_sigma=np.full_like(sizes, np.nan),
            )
    _events, out_shape = _trace(model, layer, size)
    _check_spatial(layer, out_shape, model, size)
    grid = (out_shape[2], out_shape[3])
    centers, sizes, jump, sigma = _gradient(model, layer, size, grid, n_probes, seed, batch_size)
    return ReceptiveFields(
        layer=layer, input_size=size, grid=grid, centers=centers, size=sizes, jump=jump,
        method="gradient", effective_sigma=sigma,
    )


def _support_within(model, layer, size, grid, start, jump, rf, seed) -> bool:
    """Check the analytic box against the measured gradient support of the centre position."""
    i, j = grid[0] // 2, grid[1] // 2
    g = _gradient_profiles(model, layer, size, [(i, j)], n_probes=2, seed=seed, batch_size=1)[0]
    if g.sum() <= 0:
        return True  # nothing measurable (dead unit); trust the chain analysis
    for a, idx in ((0, i), (1, j)):
        prof = g.sum(1 - a)
        nz = np.flatnonzero(prof > prof.sum() * 1e-12)
        c = start[a] + idx * jump[a]
        lo, hi = c - (rf[a] - 1) / 2.0, c + (rf[a] - 1) / 2.0
        if nz[0] < lo - 0.5 or nz[-1] > hi + 0.5:
            return False
    return True


def project_mask(rf: ReceptiveFields, mask: np.ndarray) -> np.ndarray:
    """Fraction of each position's in-image receptive field covered by a bool (H, W) mask.

    ``mask`` is given in model-input pixels (resize masks to ``rf.input_size`` first).
    Returns (h, w) float64 in [0, 1]. Uses the receptive-field box (centre +- size / 2, clipped).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(rf.input_size):
        raise CortexmapError(
            f"Mask has shape {mask.shape} but the model input is {tuple(rf.input_size)}; resize "
            "the mask to the model input size first."
        )
    integral = np.pad(mask.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    half = rf.size / 2.0
    lo = np.clip(np.floor(rf.centers - half + 0.5), 0, None).astype(int)
    hi = np.minimum(np.floor(rf.centers + half + 0.5).astype(int), np.asarray(rf.input_size))
    hi = np.maximum(hi, lo + 1)
    r0, c0, r1, c1 = lo[..., 0], lo[..., 1], hi[..., 0], hi[..., 1]
    area = (r1 - r0) * (c1 - c0)
    covered = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return covered / area

"""Layer names as users know them, with output shapes found by a probe forward pass.

Names are ``model.named_modules()`` names, the same names torchvision's
``get_graph_node_names`` gives for modules (e.g. "features.3" in AlexNet, "inception3a" in
GoogLeNet, "layer2.1.conv1" in ResNet, "conv1".."fc7" in the zoo's AlexNet).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import first_tensor, run_with_hooks
from cortexmap.models.preprocessing import input_size_of


@dataclass(frozen=True)
class LayerInfo:
    """One hookable layer: ``name`` (module path), ``kind`` (module class), ``shape`` (output
    shape per stimulus, e.g. (C, H, W), for the probed input size), ``calls`` (times the module
    runs per forward pass; extraction keeps the last call)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    calls: int = 1

    @property
    def n_units(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def spatial(self) -> bool:
        """True for convolutional maps (C, H, W)."""
        return len(self.shape) == 3

    @property
    def grid(self) -> bool:
        """True for a spatial grid: a map (C, H, W), or (T, D) tokens that tile a square
        (:func:`token_grid`)."""
        return self.spatial or (len(self.shape) == 2 and token_grid(self.shape[0]) is not None)


def token_grid(n_tokens: int) -> tuple[int, int] | None:
    """(skip, k) when ``n_tokens`` vision-transformer tokens are a k x k grid, after dropping a
    leading class token when ``skip`` is 1; None when they are not."""
    for skip in (0, 1):
        k = int(round((n_tokens - skip) ** 0.5))
        if k > 1 and k * k == n_tokens - skip:
            return skip, k
    return None


def module_names(model: nn.Module) -> list[str]:
    """Every named submodule (hookable layer), in definition order."""
    return [n for n, _ in model.named_modules() if n]


def device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def probe(
    model: nn.Module,
    names: Sequence[str] | None = None,
    input_size: int | None = None,
    allow_partial: bool = False,
) -> dict[str, LayerInfo]:
    """Run one dummy image (1, 3, S, S) through ``model`` and record each module's output.

    Returns {name: LayerInfo} for the modules that ran (modules never called in eval mode,
    e.g. training-only auxiliary heads, are absent). With ``allow_partial``, a forward pass
    that fails *after* every requested layer ran is accepted (e.g. a head that does not fit a
    small input is irrelevant when only early layers are extracted).
    """
    size = int(input_size or input_size_of(model))
    modules = dict(model.named_modules())
    wanted = list(names) if names is not None else module_names(model)
    infos: dict[str, list] = {}

    def make_hook(name: str):
        def hook(mod, inp, out):
            t = first_tensor(out)
            if t is not None:
                entry = infos.setdefault(name, [type(mod).__name__, (), 0])
                entry[1] = tuple(t.shape[1:])
                entry[2] += 1

        return hook

    try:
        run_with_hooks(model, torch.zeros(1, 3, size, size, device=device_of(model)),
                       [(modules[n], make_hook(n)) for n in wanted], eval_mode=True)
    except Exception as exc:
        if allow_partial and all(n in infos for n in wanted):
            return {n: LayerInfo(n, *infos[n]) for n in wanted}
        raise CortexmapError(
            f"The model failed on a dummy {size}x{size} input ({type(exc).__name__}: "
            f"{str(exc)[:200]}); give the input size it expects (input_size=..., "
            "--input-size)."
        ) from exc
    return {n: LayerInfo(n, *infos[n]) for n in wanted if n in infos}


def list_layers(
    model: nn.Module, input_size: int | None = None, leaves_only: bool = False
) -> list[LayerInfo]:
    """Layers of ``model`` with output shapes for a (1, 3, S, S) input (S = ``input_size`` or
    the model's preprocessing size), in definition order. ``leaves_only`` drops containers."""
    names = module_names(model)
    if leaves_only:
        mods = dict(model.named_modules())
        names = [n for n in names if not any(True for _ in mods[n].children())]
    return list(probe(model, names, input_size).values())


def resolve_layers(model: nn.Module, names: str | Sequence[str]) -> list[str]:
    """Check layer names against ``model``; raise CortexmapError listing valid names.

    ``names`` may be a list or a comma-separated string. Duplicates are dropped.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(dict.fromkeys(names))
    if not names:
        raise CortexmapError("No layers given; name at least one (see `cortexmap layers MODEL`).")
    valid = module_names(model)
    valid_set = set(valid)
    bad = [n for n in names if n not in valid_set]
    if bad:
        raise CortexmapError(
            unknown_layer_message(bad, valid, getattr(model, "cortexmap_name", ""))
        )
    return names


def unknown_layer_message(bad: Sequence[str], valid: Sequence[str], model_name: str = "") -> str:
    close = sorted({c for b in bad for c in difflib.get_close_matches(b, valid, n=5, cutoff=0.5)})
    msg = f"Unknown layer(s) {list(bad)}"
    msg += f" in model {model_name}." if model_name else "."
    if close:
        msg += f" Did you mean: {', '.join(close)}?"
    if valid == ["output"]:
        msg += (
            " This is a TorchScript model, whose only hookable layer is 'output' (its final "
            "output); for inner layers save its state_dict and load it with arch=..."
        )
    elif len(valid) <= 80:
        msg += f" Valid layer names: {', '.join(valid)}."
    else:
        top = [v for v in valid if "." not in v]
        msg += (
            f" The model has {len(valid)} layers; top-level ones: {', '.join(top)}. Run "
            "`cortexmap layers MODEL` for all names and shapes."
        )
    return msg


# -- default layer choices ---------------------------------------------------------------------
def spatial_layers(
    model: nn.Module, input_size: int | None = None, top_level: bool = False,
    tokens: bool = False,
) -> list[str]:
    """Layers whose output has a spatial grid, in definition order.

    By default every module with a (C, H, W) map; ``top_level`` keeps the model's direct
    children only, and ``tokens`` also counts vision-transformer token grids (T, D).
    input_size: the square input side used to probe shapes (default: the model's).
    """
    names = [n for n, _ in model.named_children()] if top_level else module_names(model)
    infos = probe(model, names, input_size=input_size)
    return [n for n in names if n in infos
            and (infos[n].grid if tokens else infos[n].spatial)]


def default_conv_layers(model: nn.Module, input_size: int | None = None) -> list[str]:
    """Convolutional layers a user would name: top-level blocks with a feature map that contain
    a convolution (e.g. the zoo's ``conv1``..``conv5``); else every ``Conv2d`` module."""
    spatial = spatial_layers(model, input_size)
    modules = dict(model.named_modules())
    blocks = [
        n for n in spatial
        if "." not in n and any(isinstance(m, nn.Conv2d) for m in modules[n].modules())
    ]
    if len(blocks) >= 2:
        return blocks
    return [n for n in spatial if isinstance(modules[n], nn.Conv2d)]


def later_layers(model: nn.Module, layer: str) -> list[str]:
    """Top-level layers after ``layer`` (its top-level ancestor), without the final classifier."""
    names = [n for n, _ in model.named_children()]
    top = layer.split(".")[0]
    if top not in names:
        return []
    return names[names.index(top) + 1:-1]

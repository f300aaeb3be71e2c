"""Load a network by name or file: torchvision, timm, the cortexmap zoo, TorchScript, state_dict.

Every returned model is in eval mode and carries ``cortexmap_preprocessing`` (a
:class:`~cortexmap.models.preprocessing.Preprocessing`) and ``cortexmap_name``. No weights are
ever downloaded: torchvision/timm architectures start from random initialisation unless a
local ``weights`` file is given.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.lru_cache(maxsize=1)
def timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def _zoo_names() -> list[str]:
    try:
        from cortexmap.models import zoo
    except ImportError:
        return []
    try:
        return [f"zoo:{e.name}" for e in zoo.list_zoo()]
    except Exception:  # a zoo still being built must not break error messages
        return []


def _unknown(spec: str, candidates: list[str], what: str) -> CortexmapError:
    close = difflib.get_close_matches(spec, candidates, n=8, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return CortexmapError(f"Unknown {what} {spec!r}.{hint} {_valid_hint()}")


def _valid_hint() -> str:
    zoo = _zoo_names()
    return (
        "Valid specs: a torchvision classification model name (e.g. "
        f"{', '.join(torchvision_names()[:6])}, ... {len(torchvision_names())} in all), "
        "'timm:NAME' (timm.list_models()), "
        + (f"a zoo model ({', '.join(zoo[:10])}), " if zoo else "'zoo:NAME', ")
        + "or the path of a TorchScript file or state_dict checkpoint (with arch=...)."
    )


def load(
    spec: str | os.PathLike | nn.Module,
    weights: str | os.PathLike | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    preprocessing: Preprocessing | None = None,
    seed: int = 0,
) -> nn.Module:
    """Return a model in eval mode with ``cortexmap_preprocessing`` and ``cortexmap_name``.

    Parameters
    ----------
    spec : "alexnet" / "torchvision:alexnet" (any torchvision classification model, random
        init), "timm:NAME", "zoo:NAME" (the project's trained zoo), a path to a TorchScript
        file, a path to a state_dict checkpoint (needs ``arch`` unless the checkpoint stores
        ``{"arch": ..., "state_dict": ...}``), or an ``nn.Module`` (only tagged).
    weights : local state_dict file loaded into the architecture (strict: every key must fit).
    arch : architecture spec for a state_dict checkpoint given as ``spec``.
    num_classes : output classes (default: the architecture's, or inferred from the weights).
    preprocessing : override the model's preprocessing (default: the architecture's own).
    seed : seed of the random initialisation of torchvision/timm architectures, so the same
        spec always gives the same network (the global torch RNG is left untouched).
    """
    if isinstance(spec, torch.jit.ScriptModule):
        model, name = TorchScriptModel(spec), getattr(spec, "original_name", "torchscript")
    elif isinstance(spec, nn.Module):
        model = spec
        name = getattr(model, "cortexmap_name", type(model).__name__)
    else:
        spec_s = str(spec)
        path = Path(spec_s).expanduser()
        if spec_s.startswith("zoo:"):
            model, name = _load_zoo(spec_s[4:]), spec_s
        elif spec_s.startswith("timm:"):
            with _seeded(seed):
                model, name = _load_timm(spec_s[5:], num_classes), spec_s
        elif path.is_file():
            model, name = _load_file(path, arch, num_classes), str(path)
        else:
            tv = spec_s.removeprefix("torchvision:")
            if tv in torchvision_names():
                with _seeded(seed):
                    model, name = _load_torchvision(tv, num_classes), tv
            elif path.suffix in {".pt", ".pth", ".ckpt", ".bin"} or os.sep in spec_s:
                raise CortexmapError(
                    f"Model file {path} does not exist; check the path (relative paths start "
                    "from the current folder)."
                )
            else:
                raise _unknown(spec_s, list(torchvision_names()) + _zoo_names(), "model")
    if weights is not None:
        if model_is_script(model) or isinstance(model, TorchScriptModel):
            raise CortexmapError(
                "weights= cannot be applied to a TorchScript model; it already holds its weights."
            )
        load_weights(model, weights, arch=name)
    if preprocessing is not None:
        _tag(model, "cortexmap_preprocessing", preprocessing)
    elif getattr(model, "cortexmap_preprocessing", None) is None:
        _tag(model, "cortexmap_preprocessing", Preprocessing())
    if getattr(model, "cortexmap_name", None) is None or not isinstance(spec, nn.Module):
        _tag(model, "cortexmap_name", name)
    model.eval()
    return model


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed the random init without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over a model's parameter/buffer names, shapes and a strided sample of at
    most 65,536 values per tensor: identifies the network an activation store was made with
    (cheap even for large networks; two different trainings or inits never collide in practice).
    """
    import hashlib

    target = getattr(model, "script", model)  # TorchScriptModel keeps its weights in .script
    h = hashlib.sha256()
    for name, t in target.state_dict().items():
        h.update(name.encode() + str(tuple(t.shape)).encode())
        flat = t.detach().reshape(-1)
        if not flat.is_floating_point():
            flat = flat.double()
        sample = flat[:: max(1, flat.numel() // 65536)].float().cpu()
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def model_is_script(model: nn.Module) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


def _tag(model: nn.Module, attr: str, value: Any) -> None:
    # ScriptModules refuse new attributes through __setattr__; object.__setattr__ bypasses it.
    try:
        setattr(model, attr, value)
    except (AttributeError, RuntimeError):
        object.__setattr__(model, attr, value)


def _load_zoo(name: str) -> nn.Module:
    try:
        from cortexmap.models.zoo import load_zoo
    except ImportError as exc:
        raise CortexmapError(
            f"The model zoo is not available ({exc}); zoo models come with cortexmap.models.zoo."
        ) from exc
    model = load_zoo(name)
    if getattr(model, "cortexmap_name", None) is None:
        _tag(model, "cortexmap_name", f"zoo:{name}")
    return model


def _load_torchvision(name: str, num_classes: int | None) -> nn.Module:
    import torchvision

    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if name in {"googlenet", "inception_v3"}:
        kwargs["init_weights"] = True  # silences the "init weights will change" warning
        kwargs["aux_logits"] = False  # aux heads only run in training mode anyway
    model = torchvision.models.get_model(name, **kwargs)
    _tag(model, "cortexmap_preprocessing", _torchvision_preprocessing(name))
    return model


def _torchvision_preprocessing(name: str) -> Preprocessing:
    """The preprocessing of torchvision's default weights for ``name`` (metadata only)."""
    import torchvision

    try:
        t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        return Preprocessing(
            size=int(t.crop_size[0]),
            resize=int(t.resize_size[0]),
            mean=tuple(t.mean),
            std=tuple(t.std),
        )
    except Exception:  # models without registered weights: ImageNet defaults
        return Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, resize=256)


def _load_timm(name: str, num_classes: int | None) -> nn.Module:
    import timm

    if name not in timm_names():
        raise _unknown(name, list(timm_names()), "timm model")
    kwargs: dict[str, Any] = {"pretrained": False}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    model = timm.create_model(name, **kwargs)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    crop = float(cfg.get("crop_pct") or 1.0)
    _tag(
        model,
        "cortexmap_preprocessing",
        Preprocessing(
            size=size,
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            resize=max(size, int(size / crop)),
            interpolation="bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear",
        ),
    )
    return model


class TorchScriptModel(nn.Module):
    """A TorchScript module behind a plain ``nn.Module``.

    TorchScript refuses forward hooks on its submodules, so a TorchScript file exposes only its
    final output, as the layer ``"output"``. For inner layers, save the model's state_dict and
    load it with ``arch=``.
    """

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        object.__setattr__(self, "script", script)  # unregistered: hooks on it would fail
        self.output = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.script(x))

    def train(self, mode: bool = True) -> TorchScriptModel:
        self.script.train(mode)
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(device) / .float() reach the script too
        self.script._apply(fn)
        return super()._apply(fn, recurse)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.startswith("code/") for n in zf.namelist())


def _read_checkpoint(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        import pickle

        if isinstance(exc, pickle.UnpicklingError) and "Weights only" in str(exc):
            why = "it holds pickled Python objects (e.g. a whole nn.Module), not only tensors"
        else:  # first line of torch's message, without terminal colour codes
            why = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0][:200]
        raise CortexmapError(
            f"Cannot read weights file {path}: {type(exc).__name__}: {why}. It must "
            "be a state_dict saved with torch.save(model.state_dict(), path) or a TorchScript "
            "file (torch.jit.save); whole pickled models are not loaded for safety."
        ) from exc


def _split_checkpoint(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, extra) from a raw state_dict or a {"state_dict"/"model": ..., ...} dict."""
    if not isinstance(obj, dict):
        raise CortexmapError(
            f"Weights file {path} holds a {type(obj).__name__}, not a state_dict; save "
            "model.state_dict()."
        )
    for key in ("state_dict", "model_state_dict", "model", "weights"):
        if isinstance(obj.get(key), dict):
            return obj[key], {k: v for k, v in obj.items() if k != key}
    return obj, {}


def _clean_keys(sd: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Drop wrappers' key prefixes (DataParallel's 'module.', torch.compile's '_orig_mod.')."""
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _load_file(path: Path, arch: str | None, num_classes: int | None) -> nn.Module:
    if _is_torchscript(path):
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CortexmapError(f"Cannot load TorchScript file {path}: {exc}") from exc
        return TorchScriptModel(script)
    sd, extra = _split_checkpoint(_read_checkpoint(path), path)
    arch = arch or extra.get("arch")
    if arch is None:
        raise CortexmapError(
            f"{path} is a state_dict checkpoint, which does not say which network it belongs "
            "to; pass arch= (CLI: --arch), e.g. arch='resnet18' or "
            "arch='timm:vit_tiny_patch16_224'."
        )
    if num_classes is None:
        num_classes = extra.get("num_classes")
    model = load(arch, num_classes=num_classes)
    if num_classes is None:  # a retrained head: rebuild with the checkpoint's class count
        inferred = _infer_num_classes(model, _clean_keys(sd))
        if inferred is not None:
            model = load(arch, num_classes=inferred)
    _apply_state_dict(model, sd, path, arch)
    if isinstance(extra.get("preprocessing"), dict):
        _tag(model, "cortexmap_preprocessing", Preprocessing.from_dict(extra["preprocessing"]))
    return model


def _infer_num_classes(model: nn.Module, sd: dict[str, torch.Tensor]) -> int | None:
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    key = f"{linears[-1]}.weight"
    own = model.state_dict().get(key)
    if key in sd and own is not None and sd[key].ndim == 2 and sd[key].shape[0] != own.shape[0]:
        return int(sd[key].shape[0])
    return None


def load_weights(model: nn.Module, weights: str | os.PathLike, arch: str | None = None) -> None:
    """Load a local state_dict file into ``model`` (strict), with a readable error on mismatch."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CortexmapError(f"Weights file {path} does not exist; check the path.")
    sd, _ = _split_checkpoint(_read_checkpoint(path), path)
    _apply_state_dict(model, sd, path, arch or type(model).__name__)


def _apply_state_dict(model: nn.Module, sd: dict[str, Any], path: Path, arch: str) -> None:
    sd = _clean_keys(sd)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def few(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" (+{len(xs) - 8} more)" if len(xs) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {few(shapes)}")
        raise CortexmapError(
            f"Weights file {path} does not match architecture {arch!r}: "
            + "; ".join(parts)
            + ". Pass the architecture the weights were trained with (arch=..., --arch) and "
            "its num_classes."
        )
    model.load_state_dict(sd, strict=True)

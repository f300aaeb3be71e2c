"""Load a network by name or file: torchvision, timm, the cortexmap zoo, TorchScript, state_dict.

Every returned model is in eval mode and carries ``cortexmap_preprocessing`` (a
:class:`~cortexmap.models.preprocessing.Preprocessing`) and ``cortexmap_name``. No weights are
downloaded unless no local copy exists and the machine is online: torchvision/timm names mean
their standard ImageNet weights (see :mod:`cortexmap.models.weights`); a random network only
when asked for with the ``:untrained`` suffix.
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
from unittest import mock

import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from cortexmap.models.weights import (
    OFFLINE_WEIGHTS,
    OWN_ARCHITECTURES,
    UNTRAINED,
    WeightsRecord,
    build_own,
    convert_own,
    online,
    options_message,
    resolve_offline,
    resolve_timm,
    resolve_torchvision,
    sha256_file,
    split_untrained,
    torchvision_names,
)


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
        "Valid specs: a torchvision classification model name, meaning its ImageNet weights (e.g. "
        f"{', '.join(torchvision_names()[:6])}, ... {len(torchvision_names())} in all), "
        f"{', '.join(OWN_ARCHITECTURES)} (offline weight packages), "
        "'timm:NAME' (timm.list_models()), any of these with ':untrained' for a seeded random "
        "network, "
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
    """Return a model in eval mode with ``cortexmap_preprocessing``, ``cortexmap_name`` and
    ``cortexmap_weights`` (a :class:`~cortexmap.models.weights.WeightsRecord`: which weights,
    from where, their sha256).

    Parameters
    ----------
    spec : "mobilenet_v2" / "torchvision:resnet18" (a torchvision classification model with its
        standard ImageNet weights), "efficientnet_lite0/1/2", "mobilenet_v2_deepsort" (networks
        from offline weight packages; "imagenet:NAME" is accepted too), "timm:NAME" (timm's
        pretrained weights), any of these with the suffix ":untrained" (a seeded random
        network of that architecture), "zoo:NAME" (the project's trained zoo), a path to a
        TorchScript file, a path to a state_dict checkpoint (needs ``arch`` unless the
        checkpoint stores ``{"arch": ..., "state_dict": ...}``), or an ``nn.Module`` (only
        tagged). Pretrained weights are found in the order of
        :mod:`cortexmap.models.weights` (hub cache, offline package, download when online) or
        a CortexmapError names the options; a random network is never a silent fallback.
    weights : local state_dict file loaded into the architecture (strict: every key must fit);
        replaces the standard weights.
    arch : architecture spec for a state_dict checkpoint given as ``spec``.
    num_classes : output classes (default: the architecture's, or inferred from the weights).
    preprocessing : override the model's preprocessing (default: the architecture's own).
    seed : seed of the random initialisation of ":untrained" networks, so the same spec always
        gives the same network (the global torch RNG is left untouched).
    """
    record: WeightsRecord | None = None
    if isinstance(spec, torch.jit.ScriptModule):
        model, name = TorchScriptModel(spec), getattr(spec, "original_name", "torchscript")
        record = WeightsRecord("module")
    elif isinstance(spec, nn.Module):
        model = spec
        name = getattr(model, "cortexmap_name", type(model).__name__)
        record = getattr(model, "cortexmap_weights", None) or WeightsRecord("module")
    else:
        spec_s, untrained = split_untrained(str(spec))
        path = Path(spec_s).expanduser()
        if spec_s.startswith("zoo:"):
            if untrained:
                raise CortexmapError(
                    f"{spec!r}: zoo models are trained networks; their untrained twins are zoo "
                    "entries of their own (e.g. zoo:alexnet_untrained_s0)."
                )
            model, name = _load_zoo(spec_s[4:]), spec_s
            record = WeightsRecord("zoo", detail=spec_s)
        elif path.is_file():
            if untrained:
                raise CortexmapError(f"{spec!r}: a file holds weights; ':untrained' does not "
                                     "apply.")
            model, name = _load_file(path, arch, num_classes), str(path)
            record = WeightsRecord("file", str(path), sha256_file(path))
        else:
            model, name, record = _load_named(spec_s, untrained, weights, num_classes, seed)
    if weights is not None:
        if model_is_script(model) or isinstance(model, TorchScriptModel):
            raise CortexmapError(
                "weights= cannot be applied to a TorchScript model; it already holds its weights."
            )
        named = not isinstance(spec, nn.Module) and not str(spec).startswith("zoo:")
        if num_classes is None and named and not Path(name).is_file():
            # a retrained head: rebuild the architecture with the file's class count
            sd, _ = _split_checkpoint(_read_checkpoint(Path(weights).expanduser()), Path(weights))
            inferred = _infer_num_classes(model, _clean_keys(sd))
            if inferred is not None:
                model = _load_named(split_untrained(str(spec))[0], True, weights, inferred,
                                    seed)[0]
        load_weights(model, weights, arch=name)
        record = WeightsRecord("file", str(Path(weights).expanduser()),
                               sha256_file(Path(weights).expanduser()))
    if preprocessing is not None:
        _tag(model, "cortexmap_preprocessing", preprocessing)
    elif getattr(model, "cortexmap_preprocessing", None) is None:
        _tag(model, "cortexmap_preprocessing", Preprocessing())
    if getattr(model, "cortexmap_name", None) is None or not isinstance(spec, nn.Module):
        _tag(model, "cortexmap_name", name)
    _tag(model, "cortexmap_weights", record)
    model.eval()
    return model


def split_entry(entry: str) -> tuple[str, str | None]:
    """``"resnet50=weights/r50.pth"`` -> ("resnet50", "weights/r50.pth"); no '=': (entry, None).

    The form multi-network settings (lists of networks) use to give one network its own
    weights file.
    """
    spec, sep, weights = str(entry).partition("=")
    if sep and not weights.strip():
        raise CortexmapError(f"Network {entry!r}: nothing after '='; write SPEC=WEIGHTS_FILE.")
    return spec.strip(), (weights.strip() or None)


def load_entry(entry: str, arch: str | None = None, seed: int = 0) -> nn.Module:
    """Load ``"SPEC"`` or ``"SPEC=WEIGHTS"`` (see :func:`split_entry`); named as written."""
    spec, weights = split_entry(entry)
    model = load(spec, weights=weights, arch=arch, seed=seed)
    if weights is not None:
        _tag(model, "cortexmap_name", str(entry))
    return model


def _load_named(
    spec: str, untrained: bool, weights: Any, num_classes: int | None, seed: int
) -> tuple[nn.Module, str, WeightsRecord]:
    """A torchvision / timm / offline-package network by name, with its resolved weights."""
    explicit = weights is not None
    name_out = spec + (UNTRAINED if untrained else "")
    if spec.startswith("timm:"):
        name = spec[5:]
        if name not in timm_names():
            raise _unknown(name, list(timm_names()), "timm model")
        cached = None if (untrained or explicit) else resolve_timm(name)
        with _seeded(seed):
            if untrained or explicit:
                model = _load_timm(name, num_classes)
            elif cached is not None:
                model = _load_timm(name, num_classes, file=cached[0])
            elif online("huggingface.co"):
                try:
                    model = _load_timm(name, num_classes, pretrained=True)
                except Exception as exc:
                    raise CortexmapError(
                        f"Downloading timm's weights for {name!r} failed: {exc}. "
                        + options_message(spec, "timm's weights")
                    ) from exc
            else:
                raise CortexmapError(
                    f"No pretrained weights for {spec!r} on this machine (none in the Hugging "
                    "Face / torch hub caches) and no internet to download them. "
                    + options_message(spec, "timm's weights")
                )
        if untrained:
            return model, name_out, WeightsRecord("untrained", detail=f"seed {seed}")
        return model, name_out, cached[1] if cached else WeightsRecord("download", detail="timm")
    name = spec.removeprefix("torchvision:").removeprefix("imagenet:")
    if name in OWN_ARCHITECTURES:
        with _seeded(seed):
            model = build_own(name, num_classes)
        _tag(model, "cortexmap_preprocessing", OFFLINE_WEIGHTS[name].preprocessing)
        if untrained or explicit:
            return model, name_out, WeightsRecord("untrained", detail=f"seed {seed}")
        _check_head(name, num_classes, OFFLINE_WEIGHTS[name].num_classes)
        sd, record = resolve_offline(name)
        apply_state_dict(model, convert_own(name, sd, model), Path(record.path or name), name)
        return model, name_out, record
    if name in torchvision_names():
        if untrained or explicit:
            with _seeded(seed):
                model = _load_torchvision(name, num_classes)
            twin = OFFLINE_WEIGHTS.get(name)
            if twin is not None:  # same input as the trained network this machine has
                _tag(model, "cortexmap_preprocessing", twin.preprocessing)
            return model, name_out, WeightsRecord("untrained", detail=f"seed {seed}")
        _check_head(name, num_classes, None)
        sd, record, label = resolve_torchvision(name)
        with _seeded(seed):  # the init is overwritten; seeded only to leave the RNG alone
            model = _load_torchvision(name, None, label, sd)
        return model, name_out, record
    path = Path(spec).expanduser()
    if path.suffix in {".pt", ".pth", ".ckpt", ".bin"} or os.sep in spec:
        raise CortexmapError(
            f"Model file {path} does not exist; check the path (relative paths start "
            "from the current folder)."
        )
    raise _unknown(spec, list(torchvision_names()) + list(OWN_ARCHITECTURES) + _zoo_names(),
                   "model")


def _check_head(name: str, num_classes: int | None, own: int | None) -> None:
    if num_classes is not None and num_classes != (own or 1000):
        raise CortexmapError(
            f"The ImageNet weights of {name!r} have {own or 1000} output classes, not "
            f"{num_classes}. For another head, build {name + UNTRAINED!r} with num_classes and "
            "load your own weights file (weights=...)."
        )


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


def _load_torchvision(
    name: str, num_classes: int | None, label: str | None = None, sd: dict | None = None
) -> nn.Module:
    """torchvision's ``name``: random init, or built with its weights enum ``label`` holding
    the already resolved state_dict ``sd`` (torchvision's builder then applies its own
    weight-specific settings, e.g. GoogLeNet's ``transform_input``; nothing is downloaded)."""
    import torchvision
    from torchvision.models._api import WeightsEnum

    if label is not None:
        member = getattr(torchvision.models.get_model_weights(name), label.split(".")[-1])
        with mock.patch.object(WeightsEnum, "get_state_dict", lambda self, *a, **k: sd):
            try:
                model = torchvision.models.get_model(name, weights=member)
            except RuntimeError as exc:  # strict load_state_dict failed
                raise CortexmapError(
                    f"The weights file for {name!r} does not fit its architecture: "
                    f"{str(exc).splitlines()[0][:300]}. Delete or reinstall the file."
                ) from exc
        _tag(model, "cortexmap_preprocessing", _torchvision_preprocessing(name, label))
        return model
    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if name in {"googlenet", "inception_v3"}:
        kwargs["init_weights"] = True  # silences the "init weights will change" warning
        kwargs["aux_logits"] = False  # aux heads only run in training mode anyway
    model = torchvision.models.get_model(name, **kwargs)
    _tag(model, "cortexmap_preprocessing", _torchvision_preprocessing(name))
    return model


def _torchvision_preprocessing(name: str, label: str | None = None) -> Preprocessing:
    """The preprocessing of torchvision's weights ``label`` (default: DEFAULT) for ``name``."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
        w = getattr(enum, label.split(".")[-1]) if label else enum.DEFAULT
        t = w.transforms()
        return Preprocessing(
            size=int(t.crop_size[0]),
            resize=int(t.resize_size[0]),
            mean=tuple(t.mean),
            std=tuple(t.std),
        )
    except Exception:  # models without registered weights: ImageNet defaults
        return Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, resize=256)


def _load_timm(
    name: str, num_classes: int | None, pretrained: bool = False, file: str | None = None
) -> nn.Module:
    import timm

    if name not in timm_names():
        raise _unknown(name, list(timm_names()), "timm model")
    kwargs: dict[str, Any] = {"pretrained": pretrained or file is not None}
    if file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": file}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as exc:
        if file is None:
            raise
        raise CortexmapError(f"timm's weights file {file} does not fit {name!r}: {exc}") from exc
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
        elif path.stat().st_size == 0:
            why = "the file is empty (0 bytes; an interrupted download or copy?)"
        else:  # first line of torch's message, without terminal colour codes
            lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
            why = lines[0][:200] if lines else "unreadable (truncated or not a PyTorch file)"
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
    arch = split_untrained(str(arch))[0] + UNTRAINED  # the file supplies the weights
    model = load(arch, num_classes=num_classes)
    if num_classes is None:  # a retrained head: rebuild with the checkpoint's class count
        inferred = _infer_num_classes(model, _clean_keys(sd))
        if inferred is not None:
            model = load(arch, num_classes=inferred)
    apply_state_dict(model, sd, path, arch)
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
    apply_state_dict(model, sd, path, arch or type(model).__name__)


def apply_state_dict(model: nn.Module, sd: dict[str, Any], path: Path, arch: str) -> None:
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

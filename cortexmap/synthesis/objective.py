"""The synthesis objective: layer RDMs of a batch of images and how correlated they are.

:class:`LayerRDMObjective` runs images through a model with forward hooks on the chosen layers,
builds one differentiable RDM per layer (:mod:`cortexmap.rsa.torch_rdm`) and scores the batch by
the mean squared Pearson correlation between every pair of layer RDMs. The forward pass is cut
short once the deepest requested layer has run, so the classifier head costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import capture
from cortexmap.models.layers import resolve_layers
from cortexmap.models.preprocessing import input_size_of
from cortexmap.rsa.torch_rdm import orthogonality_loss, rdm_correlations, rdm_vector

# Used when a model carries no ``cortexmap_preprocessing`` (a bare torch module): ImageNet
# statistics, the convention of torchvision and timm models.
_DEFAULT_MEAN = (0.485, 0.456, 0.406)
_DEFAULT_STD = (0.229, 0.224, 0.225)


def find_modules(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """Map layer names to submodules; an unknown name raises an error listing valid ones."""
    if len(set(layers)) != len(layers):
        raise CortexmapError(f"Layer names repeat in {list(layers)}; give each layer once.")
    resolve_layers(model, list(layers))  # CortexmapError naming the valid layers
    modules = dict(model.named_modules())
    return {name: modules[name] for name in layers}


def model_normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std), each (1, 3, 1, 1), from the model's preprocessing record."""
    prep = getattr(model, "cortexmap_preprocessing", None)
    mean = tuple(getattr(prep, "mean", None) or _DEFAULT_MEAN)
    std = tuple(getattr(prep, "std", None) or _DEFAULT_STD)
    return (torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))


class LayerRDMObjective:
    """Layer RDMs of images and the orthogonality loss over every pair of layers.

    model: any torch module (put in eval mode; its parameters are frozen here).
    layers: >= 2 module names (e.g. "inception3a", "conv2").
    metric: RDM distance ("correlation" default, "euclidean", "sqeuclidean", "cosine").
    input_size: if set, images are resized (bilinear, differentiable) to this size before the
    model; otherwise they go in at their own size.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        metric: str = "correlation",
        input_size: int | None = None,
    ) -> None:
        layers = list(layers)
        if len(layers) < 2:
            raise CortexmapError(
                f"Synthesis needs at least 2 layers to orthogonalize; got {layers}. Pass two or "
                "more layer names (e.g. --layers conv1,conv3,fc6)."
            )
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layers = layers
        self.modules = find_modules(model, layers)
        self.metric = metric
        self.input_size = input_size
        self.mean, self.std = model_normalization(model)
        self._order: list[str] | None = None  # execution order, learned on the first pass

    def to(self, device: torch.device | str) -> LayerRDMObjective:
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False)
        return (x - self.mean) / self.std

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of each layer, {name: (n, ...)}; images (n, 3, H, W) in [0, 1]."""
        modules = (self.modules if self._order is None
                   else {n: self.modules[n] for n in self._order})
        try:  # the first pass learns the execution order; later ones stop after the last layer
            feats = capture(self.model, self._prepare(images), modules, grad=True,
                            stop_early=self._order is not None)
        except RuntimeError as exc:
            raise CortexmapError(
                f"The model rejected images of size {tuple(images.shape[1:])}: {exc}. Use the "
                f"model's input size (image_size={input_size_of(self.model)}) or set input_size "
                "to resize images inside the loop."
            ) from exc
        missing = [n for n in self.layers if n not in feats]
        if missing:
            raise CortexmapError(
                f"Layer(s) {missing} never ran in the forward pass (unused modules); choose "
                "layers on the model's forward path."
            )
        if self._order is None:
            self._order = list(feats)
        return {n: feats[n] for n in self.layers}

    def rdm_vectors(self, images: torch.Tensor) -> torch.Tensor:
        """(n_layers, n_pairs) differentiable RDM vectors of the images."""
        feats = self.features(images)
        return torch.stack([rdm_vector(f.float(), self.metric) for f in feats.values()])

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, rdm_vectors): loss is the mean squared off-diagonal correlation."""
        vecs = self.rdm_vectors(images)
        return orthogonality_loss(vecs), vecs

    @torch.no_grad()
    def correlation_matrix(self, images: torch.Tensor) -> torch.Tensor:
        """Layer-by-layer Pearson correlation of the RDMs, (n_layers, n_layers)."""
        return rdm_correlations(self.rdm_vectors(images))

    def check_input(self, size: int) -> None:
        """Run one grey image of ``size`` through the model: a clear error if it is rejected."""
        with torch.no_grad():
            grey = torch.full((1, 3, size, size), 0.5, device=self.mean.device)
            self.features(grey)

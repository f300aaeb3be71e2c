"""What the lesion and contrast analyses share: the network and its test set at full contrast.

Both measure a classifier's accuracy on a test set at several contrast levels
(:mod:`cortexmap.analyses.lesion`, :mod:`cortexmap.analyses.contrast`); :func:`prepare_test`
loads the network and resolves the test set once for either, refusing a network whose outputs
do not fit the labels before any output exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models import load
from cortexmap.models.preprocessing import input_size_of
from cortexmap.probes import contrast as ct
from cortexmap.probes.testset import TestSet, check_model_fits, resolve_test_set

ZOO_CONV_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def load_network(spec: str, model: nn.Module | None = None) -> nn.Module:
    """``model`` (an API user's network) or the network of ``spec``, in eval mode."""
    return (model if model is not None else load(spec)).eval()


def _some_images(n_images: int) -> int:
    if n_images < 1:
        raise ValueError(f"the test set is empty (n_images={n_images}); use at least one image "
                         "per class, e.g. n_images=200")
    return n_images


#: Images of the procedural test split.
TestImages = Annotated[int, AfterValidator(_some_images)]


@dataclass
class Tested:
    """The test set of a run: full-contrast images (n, S, S, 3), what accuracy is measured
    against (n,), class names, the size of the label space and how accuracy is defined."""

    images: np.ndarray
    targets: np.ndarray
    class_names: list[str] | None
    n_classes: int
    measure: str
    proxy: bool


def prepare_test(config, model: nn.Module | None = None, images: np.ndarray | None = None,
                 labels: np.ndarray | None = None, class_names: list[str] | None = None
                 ) -> tuple[nn.Module, Tested]:
    """The network (``model`` or ``config.model``) and its test set.

    The test set is the config's (procedural split, the user's folder + labels, or the
    agreement proxy) or the API's ``images`` (n, H, W, 3) in [0, 1] with ``labels`` (n,); a
    network whose outputs do not fit it is refused here, before any output exists.
    """
    net = load_network(config.model, model)
    proxy = config.accuracy == "agreement"
    if images is None:
        ts = resolve_test_set(config, input_size_of(net, default=config.image_size),
                              config.n_images, config.seed)
    else:
        images = np.asarray(images, dtype=np.float32)
        if labels is None and not proxy:
            raise CortexmapError("images= needs labels= (one class index per image), or "
                                 "accuracy='agreement' for the proxy.")
        ct.check_test_set(images, labels)
        ts = TestSet(images, None if proxy else np.asarray(labels), class_names,
                     len(class_names) if class_names else None, "the images given", proxy)
    k = check_model_fits(net, ts)
    n_classes = ts.n_classes or k or int(np.max(ts.labels)) + 1
    return net, Tested(ts.images, ts.targets(net), None if proxy else ts.class_names, n_classes,
                       ts.describe(), proxy)


def pct(levels) -> str:
    """Contrast levels as percentages, highest first: "100%, 10%, 1%"."""
    return ", ".join(f"{100 * c:g}%" for c in sorted(levels, reverse=True))


def informative_levels(contrast: np.ndarray, accuracy: np.ndarray, chance: float,
                       margin: float = 0.2, below_ceiling: float = 0.02) -> list[float]:
    """Contrast levels whose accuracy lies between chance + ``margin`` and the ceiling (the best
    accuracy) minus ``below_ceiling``: the levels where a lesion's effect can show at all."""
    acc = np.asarray(accuracy, dtype=float)
    ceiling = float(acc.max())
    keep = (acc >= chance + margin) & (acc <= ceiling - below_ceiling)
    return sorted(float(c) for c in np.asarray(contrast, dtype=float)[keep])

"""Labelled test images for the accuracy-based analyses (orientation ablation, lesion, contrast).

The configs of these analyses share four fields (:class:`TestSetFields`):

``test_images``
    A folder of images, or ``"bundled"`` (the 16 bundled photographs; their ids are the photo
    names), default: the procedural test split the zoo was trained for.
``test_labels``
    A CSV with an id column (``id``/``image``/``file``: the image file name, with or without
    extension) and a label column (``label``/``category``/``class``): a class index in the
    model's output order, or a class name found in ``class_names``.
``class_names``
    The class names in the model's output order: a list, a text file with one name per line,
    or ``"imagenet"`` (the 1000 ImageNet-1k classes, for the real ImageNet networks).
``accuracy``
    ``"labels"`` (top-1 against the labels) or ``"agreement"``: when no labels exist, an
    explicit proxy, the agreement of a perturbed network's top-1 with the *same network's own
    top-1 on the intact, full-contrast image*. Reports name it as a proxy.

A network whose output size does not match the test set's classes is a clear error before any
work starts (a 1000-class network scored on 10 procedural classes would otherwise be a silent
accuracy of 0).
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from cortexmap.config import AnalysisConfig
from cortexmap.errors import CortexmapError
from cortexmap.models import input_size_of, preprocess
from cortexmap.models.weights import OFFLINE_WEIGHTS, imagenet_categories, split_untrained
from cortexmap.stimuli.bundled import load_bundled
from cortexmap.stimuli.folder import load_folder, read_categories
from cortexmap.stimuli.procedural import CLASSES, ProceduralObjects

AccuracyTarget = Literal["labels", "agreement"]

#: How reports name the proxy.
AGREEMENT = ("agreement with the network's own top-1 on the intact, full-contrast image "
             "(a proxy: no labels)")


class TestSetFields(AnalysisConfig):
    """Config fields naming the test set (see the module docstring)."""

    __test__ = False  # not a pytest class

    test_images: str | None = Field(None, description="folder of test images (default: the "
                                                       "procedural test split)")
    test_labels: str | None = Field(None, description="CSV: id (image file), label (index or "
                                                      "class name)")
    class_names: str | list[str] | None = Field(None, description="class names in output order: "
                                                                  "list, file, or 'imagenet'")
    accuracy: AccuracyTarget = Field("labels", description="'labels' or 'agreement' (proxy: the "
                                                           "network's own top-1 on the intact "
                                                           "image)")


@dataclass
class TestSet:
    """Test images (n, S, S, 3) in [0, 1] with what accuracy is measured against.

    labels: (n,) class indices, or None under the agreement proxy (see :meth:`targets`).
    n_classes: size of the label space (None when only integer labels without names are known).
    """

    __test__ = False  # not a pytest class

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    n_classes: int | None
    source: str
    proxy: bool

    def describe(self) -> str:
        what = AGREEMENT if self.proxy else "top-1 accuracy against the labels"
        return f"{what}; {len(self.images)} images of {self.source}"

    def targets(self, model: nn.Module, batch_size: int = 128) -> np.ndarray:
        """The labels, or under the proxy the model's own top-1 on the intact images."""
        if not self.proxy:
            return np.asarray(self.labels)
        return top1(model, self.images, batch_size)


def read_class_names(spec: str | list[str] | None) -> list[str] | None:
    """Class names from a list, a text file (one per line) or ``"imagenet"``."""
    if spec is None or isinstance(spec, list):
        return spec
    if spec.strip().lower() == "imagenet":
        return imagenet_categories()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CortexmapError(
            f"class_names {spec!r} is neither 'imagenet' nor an existing text file (one class "
            "name per line, in the model's output order)."
        )
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise CortexmapError(f"Class names file {path} is empty.")
    return names


def _label_indices(raw: list[str], names: list[str] | None, source: str) -> np.ndarray:
    if names is not None:
        index = {n: i for i, n in enumerate(names)}
        index.update({n.lower(): i for i, n in enumerate(names)})
        out = []
        for r in raw:
            if r in index or r.lower() in index:
                out.append(index.get(r, index.get(r.lower())))
            elif r.lstrip("-").isdigit() and 0 <= int(r) < len(names):
                out.append(int(r))
            else:
                close = difflib.get_close_matches(r, names, n=3)
                raise CortexmapError(
                    f"Label {r!r} in {source} is not one of the {len(names)} class names"
                    + (f" (close: {', '.join(close)})" if close else "") + "."
                )
        return np.asarray(out, dtype=np.int64)
    if all(r.strip().lstrip("-").isdigit() for r in raw):
        labels = np.asarray([int(r) for r in raw], dtype=np.int64)
        if labels.min() < 0:
            raise CortexmapError(f"Labels in {source} must be class indices >= 0.")
        return labels
    raise CortexmapError(
        f"The labels in {source} are class names ({raw[0]!r}, ...); give class_names (a list, a "
        "file with one name per line in the model's output order, or 'imagenet') so they map "
        "onto the model's outputs."
    )


@functools.lru_cache(maxsize=4)
def _procedural(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rendered once per process: every model of a sweep is tested on the same images."""

    data = ProceduralObjects("test", n=n, seed=seed, size=size)
    return data.images, data.labels


def resolve_test_set(fields: TestSetFields, size: int, n_default: int, seed: int) -> TestSet:
    """The test set a config names, its images at ``size`` px (see the module docstring)."""
    proxy = fields.accuracy == "agreement"
    names = read_class_names(fields.class_names)
    if fields.test_images is None:
        if fields.test_labels is not None:
            raise CortexmapError("test_labels needs test_images (the folder the labels describe).")

        if n_default < 1:
            raise CortexmapError(
                f"The test set is empty ({n_default} images); use at least one image per class."
            )
        images, labels = _procedural(n_default, seed, size)
        return TestSet(images, None if proxy else labels, list(CLASSES), len(CLASSES),
                       f"the procedural test split ({len(CLASSES)} classes)", proxy)

    bundled = fields.test_images.strip().lower() == "bundled"
    folder = "the bundled photographs" if bundled else Path(fields.test_images).expanduser()
    if not proxy and fields.test_labels is None:
        raise CortexmapError(
            f"Test images {folder} need labels for accuracy: test_labels=CSV (id,label; CLI "
            "--labels) with class_names (e.g. 'imagenet'), or accuracy='agreement' (CLI "
            "--accuracy agreement) to use the network's own top-1 on the intact image as a proxy."
        )
    if bundled:
        stim = load_bundled(size)
    else:
        stim = load_folder(folder, size=size)
    labels = None
    if not proxy:
        raw = read_categories(os.fspath(Path(fields.test_labels).expanduser()), stim.ids)
        labels = _label_indices(raw, names, str(fields.test_labels))
    return TestSet(stim.images, labels, names, len(names) if names else None,
                   str(folder) if bundled else f"the folder {folder}", proxy)


@torch.inference_mode()
def output_size(model: nn.Module) -> int | None:
    """Values per image of the model's output (None if it is not (n, k))."""

    size = input_size_of(model, default=64)
    was = model.training
    model.eval()
    try:
        out = model(preprocess(np.zeros((1, size, size, 3), np.float32),
                               getattr(model, "cortexmap_preprocessing", None)))
    finally:
        model.train(was)
    return int(out.shape[1]) if out.ndim == 2 else None


def check_model_fits(model: nn.Module, test: TestSet, name: str | None = None) -> int | None:
    """Refuse a model whose output size does not match the test set's classes; returns the
    output size."""
    k = output_size(model)
    label = name or getattr(model, "cortexmap_name", type(model).__name__)
    fix = ("Give a test set in the model's label space (test_images=FOLDER with "
           "test_labels=CSV and class_names, e.g. 'imagenet'; CLI --images/--labels/"
           "--class-names), or accuracy='agreement' (CLI --accuracy agreement) for the proxy: "
           "agreement with the network's own top-1 on the intact image.")
    if k is None:
        raise CortexmapError(
            f"{label} does not output one score per class (its output is not (n, classes)), so "
            f"top-1 accuracy is undefined. {fix}"
        )
    if test.proxy:
        base = split_untrained(str(getattr(model, "cortexmap_name", "")))[0]
        if base in OFFLINE_WEIGHTS and OFFLINE_WEIGHTS[base].num_classes is None:
            raise CortexmapError(
                f"{label} is a feature trunk without classifier: its outputs are features, not "
                "class scores, so neither accuracy nor the agreement proxy is defined."
            )
        return k
    if test.n_classes is not None and k != test.n_classes:
        raise CortexmapError(
            f"{label} outputs {k} classes but the test set ({test.source}) has "
            f"{test.n_classes}; its accuracy would be meaningless (never scored as 0). {fix}"
        )
    if test.labels is not None and int(np.max(test.labels)) >= k:
        raise CortexmapError(
            f"The labels of {test.source} go up to {int(np.max(test.labels))} but {label} has "
            f"only {k} outputs. {fix}"
        )
    return k


@torch.inference_mode()
def top1(model: nn.Module, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The model's top-1 class for each image (n, S, S, 3) in [0, 1]."""

    pp = getattr(model, "cortexmap_preprocessing", None)
    was = model.training
    model.eval()
    try:
        preds = [model(preprocess(images[i:i + batch_size], pp)).argmax(1)
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was)
    return torch.cat(preds).cpu().numpy()


def name_proxy(findings) -> None:
    """Say in each finding's numbers that its accuracy is the agreement proxy."""
    for f in findings:
        if AGREEMENT not in f.numbers:
            f.numbers = f"Accuracy = {AGREEMENT}. {f.numbers}"

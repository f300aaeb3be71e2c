"""One resolver for a config's ``stimuli`` value: the bundled photographs or an image folder."""

from __future__ import annotations

import os
from pathlib import Path

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import StimulusSet
from cortexmap.stimuli.bundled import load_bundled
from cortexmap.stimuli.folder import load_folder

BUNDLED = "bundled"


def load_stimuli(source: str | os.PathLike, size: int | None = None,
                 masks_dir: str | os.PathLike | None = None) -> StimulusSet:
    """``"bundled"`` -> :func:`load_bundled`; a folder -> :func:`load_folder` (with its
    ``masks_dir``), at ``size`` px. Anything else is a CortexmapError naming both options."""
    if str(source) == BUNDLED:
        return load_bundled(size=size or 128)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise CortexmapError(
            f"stimuli={str(source)!r} is neither 'bundled' nor an image folder; pass "
            "'bundled' or a folder of PNG/JPEG images."
        )
    return load_folder(path, masks_dir=masks_dir, size=size)

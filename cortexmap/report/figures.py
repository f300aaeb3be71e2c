"""Matplotlib figures as PNG: one renderer for report pages and figure files."""

from __future__ import annotations

import io
import os
from pathlib import Path

from cortexmap.utils.io import write_bytes


def figure_png(fig, dpi: int = 110, close: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure (tight bounding box); the figure is closed unless
    ``close=False``."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path: str | os.PathLike, dpi: int = 110, close: bool = True) -> Path:
    """Write a matplotlib figure to ``path`` as PNG, atomically; returns the path."""
    return write_bytes(Path(path), figure_png(fig, dpi, close))

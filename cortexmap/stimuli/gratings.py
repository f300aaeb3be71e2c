"""Static sinusoidal gratings (orientation x spatial frequency x phase) with a metadata table.

Conventions, as on screen: orientation is the angle of the stripes, counter-clockwise from
horizontal (0 deg = horizontal stripes, 90 deg = vertical stripes; orientation is periodic in
180 deg). Spatial frequency is in cycles per image width. Phase is measured at the image
centre: the luminance there is ``mean * (1 + contrast * sin(phase))`` (phase 90 = a peak).
Contrast is the Michelson contrast of the grating (its RMS contrast is contrast / sqrt 2).
A drifting grating is the sequence of phases at one orientation and frequency.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import StimulusSet


def grating(
    orientation_deg: float,
    spatial_freq_cpi: float,
    phase_deg: float = 0.0,
    contrast: float = 1.0,
    size: int = 64,
    aperture: float | None = None,
    mean_luminance: float = 0.5,
    aperture_edge: float = 0.0,
) -> np.ndarray:
    """One grating as a float32 (size, size) luminance image in [0, 1] (see :func:`gratings`)."""
    # Pixel centres in units of image width, origin at the centre, y pointing up on screen.
    coords = (np.arange(size) + 0.5) / size - 0.5
    x = coords[None, :]
    y = -coords[:, None]
    theta = np.deg2rad(orientation_deg)
    # Stripes at angle theta vary along the perpendicular direction (theta + 90 deg).
    along = -x * np.sin(theta) + y * np.cos(theta)
    wave = np.sin(2 * np.pi * spatial_freq_cpi * along + np.deg2rad(phase_deg))
    img = mean_luminance * (1 + contrast * wave)
    if aperture is not None:
        img = mean_luminance + (img - mean_luminance) * aperture_weights(
            size, aperture, aperture_edge
        )
    return img.astype(np.float32)


def aperture_weights(size: int, radius_frac: float, edge_frac: float = 0.0) -> np.ndarray:
    """(size, size) weights in [0, 1]: 1 inside a centred disk of radius ``radius_frac`` x
    half the image width, 0 outside, with an optional raised-cosine edge of width ``edge_frac``.
    """
    coords = (np.arange(size) + 0.5) / size - 0.5
    r = np.hypot(coords[None, :], coords[:, None]) / 0.5  # 1.0 = touches the image edge
    if edge_frac <= 0:
        return (r <= radius_frac).astype(np.float64)
    t = np.clip((r - (radius_frac - edge_frac)) / edge_frac, 0, 1)
    return 0.5 * (1 + np.cos(np.pi * t))


def gratings(
    orientations_deg: Sequence[float] | np.ndarray,
    spatial_freqs_cpi: Sequence[float] | np.ndarray,
    phases_deg: Sequence[float] | np.ndarray = (0.0,),
    contrast: float = 1.0,
    size: int = 64,
    aperture: float | None = None,
    mean_luminance: float = 0.5,
    aperture_edge: float = 0.0,
) -> StimulusSet:
    """All combinations of orientation x spatial frequency x phase as a StimulusSet.

    Parameters
    ----------
    orientations_deg : stripe angles in degrees (0 = horizontal, 90 = vertical).
    spatial_freqs_cpi : cycles per image width; each must be below the Nyquist limit size/2.
    phases_deg : phases in degrees (a full cycle = 360).
    contrast : Michelson contrast in (0, 1].
    size : image side in pixels.
    aperture : radius of a circular aperture as a fraction of half the image side (1.0 = the
        inscribed circle); None = full field. Outside the aperture the image is mean grey.
    mean_luminance : background / mean grey level, in (0, 1).
    aperture_edge : width of a raised-cosine edge (same unit as ``aperture``), 0 = hard edge.

    Returns
    -------
    StimulusSet with images (n, size, size, 3), n = n_ori * n_sf * n_phase, ordered with
    orientation slowest and phase fastest; ``metadata`` columns orientation_deg,
    spatial_freq_cpi, phase_deg, contrast, aperture; ``categories`` = orientation labels;
    ``masks`` = the aperture (all True without one).
    """
    oris = np.atleast_1d(np.asarray(orientations_deg, dtype=float))
    sfs = np.atleast_1d(np.asarray(spatial_freqs_cpi, dtype=float))
    phases = np.atleast_1d(np.asarray(phases_deg, dtype=float))
    if not (0 < contrast <= 1):
        raise CortexmapError(f"Grating contrast must be in (0, 1]; got {contrast}.")
    if not (0 < mean_luminance < 1) or mean_luminance * (1 + contrast) > 1 + 1e-9:
        raise CortexmapError(
            f"mean_luminance {mean_luminance} with contrast {contrast} leaves [0, 1]; use "
            "mean_luminance=0.5 for full contrast."
        )
    if int(size) != size or size < 4:
        raise CortexmapError(f"Grating size must be an integer >= 4 pixels; got {size}.")
    if len(oris) == 0 or len(sfs) == 0 or len(phases) == 0:
        raise CortexmapError("Give at least one orientation, spatial frequency and phase.")
    if (sfs <= 0).any() or (sfs >= size / 2).any():
        raise CortexmapError(
            f"Spatial frequencies must be in (0, size/2) = (0, {size / 2}) cycles per image to "
            f"be represented without aliasing; got {sfs.tolist()}. Lower them or raise size."
        )
    if aperture is not None and not (0 < aperture):
        raise CortexmapError(f"aperture must be a positive radius fraction; got {aperture}.")
    rows, images = [], []
    for o, f, p in itertools.product(oris, sfs, phases):
        images.append(grating(o, f, p, contrast, size, aperture, mean_luminance, aperture_edge))
        rows.append(
            {
                "orientation_deg": o,
                "spatial_freq_cpi": f,
                "phase_deg": p,
                "contrast": contrast,
                "aperture": np.nan if aperture is None else aperture,
            }
        )
    meta = pd.DataFrame(rows)
    ids = [
        f"grating_o{r.orientation_deg:06.2f}_sf{r.spatial_freq_cpi:06.2f}_p{r.phase_deg:06.2f}"
        for r in meta.itertuples()
    ]
    stack = np.stack(images)
    mask = (
        np.ones((size, size), bool)
        if aperture is None
        else (aperture_weights(size, aperture) > 0.5)
    )
    return StimulusSet(
        images=np.repeat(stack[..., None], 3, axis=-1),
        ids=ids,
        categories=[f"{o:g}" for o in meta["orientation_deg"]],
        masks=np.broadcast_to(mask, stack.shape).copy(),
        metadata=meta,
        name="gratings",
    )

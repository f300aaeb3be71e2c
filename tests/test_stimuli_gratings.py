"""Sinusoidal gratings: orientation, spatial frequency, phase, contrast, aperture."""

from __future__ import annotations

import numpy as np
import pytest

from cortexmap.errors import CortexmapError
from cortexmap.stimuli import grating, gratings, measure_contrast


def _dominant_frequency(img: np.ndarray) -> tuple[int, int]:
    """(fy, fx) of the strongest non-DC Fourier component, in cycles per image."""
    f = np.abs(np.fft.fft2(img - img.mean()))
    fy, fx = np.unravel_index(np.argmax(f), f.shape)
    n = img.shape[0]
    return (fy if fy <= n // 2 else fy - n), (fx if fx <= n // 2 else fx - n)


def test_orientation_convention():
    horiz = grating(0, 4, size=32)
    vert = grating(90, 4, size=32)
    assert np.allclose(horiz, horiz[:, :1])  # 0 deg: stripes horizontal, constant along x
    assert np.allclose(vert, vert[:1, :])  # 90 deg: stripes vertical, constant along y
    # orientation is periodic in 180 deg: theta + 180 flips the wave, i.e. phase -> 180 - phase
    np.testing.assert_allclose(grating(30, 4, 90, size=32), grating(210, 4, 90, size=32), atol=1e-5)
    np.testing.assert_allclose(grating(30, 4, 0, size=32), grating(210, 4, 180, size=32), atol=1e-5)


@pytest.mark.parametrize("sf", [1, 3, 8, 15])
def test_spatial_frequency_in_cycles_per_image(sf):
    fy, fx = _dominant_frequency(grating(90, sf, size=32))
    assert (abs(fy), abs(fx)) == (0, sf)
    fy, fx = _dominant_frequency(grating(0, sf, size=32))
    assert (abs(fy), abs(fx)) == (sf, 0)


def test_phase_and_contrast():
    size = 64
    c = size // 2  # pixel centres straddle the image centre: average the central 2x2

    def centre(img):
        return img[c - 1 : c + 1, c - 1 : c + 1].mean()

    assert centre(grating(45, 2, 90, contrast=0.5, size=size)) == pytest.approx(0.75, abs=0.01)
    assert centre(grating(45, 2, 270, contrast=0.5, size=size)) == pytest.approx(0.25, abs=0.01)
    img = grating(0, 4, 0, contrast=0.4, size=size)
    assert img.mean() == pytest.approx(0.5, abs=1e-4)
    assert measure_contrast(img, "michelson") == pytest.approx(0.4, abs=0.01)
    assert measure_contrast(img, "rms") == pytest.approx(0.4 / np.sqrt(2), abs=0.01)
    # a half-cycle phase shift inverts the grating about the mean
    np.testing.assert_allclose(
        grating(20, 3, 180, 0.4, size) - 0.5, -(grating(20, 3, 0, 0.4, size) - 0.5), atol=1e-5
    )


def test_grating_set_metadata_order_and_aperture():
    s = gratings([0, 45, 90, 135], [2, 4], [0, 90, 180], contrast=0.8, size=32, aperture=0.5)
    assert len(s) == 4 * 2 * 3 and s.images.shape == (24, 32, 32, 3)
    m = s.metadata
    assert list(m.columns) == [
        "orientation_deg",
        "spatial_freq_cpi",
        "phase_deg",
        "contrast",
        "aperture",
    ]
    assert list(m["orientation_deg"][:6]) == [0] * 6 and list(m["phase_deg"][:3]) == [0, 90, 180]
    assert s.categories[0] == "0" and s.categories[-1] == "135" and len(set(s.ids)) == 24
    outside = ~s.masks[0]
    assert outside.any() and np.allclose(s.images[:, outside], 0.5)  # mean grey outside
    assert s.masks[0, 16, 16] and not s.masks[0, 0, 0]
    assert s.masks.mean() == pytest.approx(np.pi * 0.25**2, abs=0.03)
    np.testing.assert_allclose(s.images[..., 0], s.images[..., 2])  # grey
    soft = gratings([0], [4], aperture=0.6, aperture_edge=0.2, size=32)
    assert (
        0.15 < soft.masks.mean() < 0.3
    )  # mask = weight > 0.5: radius 0.5 and s.images.min() >= 0 and s.images.max() <= 1


def test_bad_inputs():
    with pytest.raises(CortexmapError, match="Nyquist|aliasing"):
        gratings([0], [16], size=32)
    with pytest.raises(CortexmapError, match="contrast"):
        gratings([0], [2], contrast=0)
    with pytest.raises(CortexmapError, match="contrast"):
        gratings([0], [2], contrast=1.5)
    with pytest.raises(CortexmapError, match="at least one"):
        gratings([], [2])
    with pytest.raises(CortexmapError, match="aperture"):
        gratings([0], [2], aperture=-1)

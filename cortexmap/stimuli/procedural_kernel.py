"""Compiled per-pixel renderer of the procedural object dataset (see ``procedural.py``).

One Numba kernel walks each image once, pixel by pixel, and composites background, clutter
behind, object (shape, texture, shading, outline), clutter in front and pixel noise with the
values in registers. The former NumPy renderer built a dozen full-size temporaries per step,
and the per-image pixel noise alone (NumPy's Gaussian sampler) cost as much as a training step;
here the noise is a counter-based hash of (image seed, pixel, channel), so every pixel is
independent and any image renders alone. ``nogil`` lets the training loop render the next
epoch in a background thread while PyTorch trains; ``cache`` keeps the compiled code on disk.

Shapes are signed-distance functions in object units (the object fits about the unit disk),
exact for boxes, circles and the triangle (Inigo Quilez's formulas).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_JIT = dict(cache=True, nogil=True)
_SECTOR = 2 * math.pi / 5  # star points
# Irwin-Hall noise: the sum of four 16-bit uniforms, standardised (bounded, close to normal)
_NOISE_MEAN = 4 * 32767.5
_NOISE_STD = 65536.0 / math.sqrt(3.0)
# Per class: radius of the shape's farthest point from its centre (object units), and a lower
# bound k on the SDF's slope away from the shape (1 for exact SDFs; 0.7 for the star's scaled
# polar profile). sdf >= k * (r - radius), so pixels beyond radius + 0.5 px / k have zero
# coverage and the renderer skips their SDF and texture (tests check both bounds).
SHAPE_RADIUS = np.array([0.80, 0.97, 1.21, 0.97, 0.95, 0.90, 0.90, 0.95, 0.89, 1.14])
SDF_SLOPE = np.array([1.0, 1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


@numba.njit(**_JIT)
def _box(x: float, y: float, bx: float, by: float) -> float:
    qx, qy = abs(x) - bx, abs(y) - by
    ox, oy = max(qx, 0.0), max(qy, 0.0)
    return math.sqrt(ox * ox + oy * oy) + min(max(qx, qy), 0.0)


@numba.njit(**_JIT)
def _circle(x: float, y: float, r: float) -> float:
    return math.sqrt(x * x + y * y) - r


@numba.njit(**_JIT)
def _triangle(x: float, y: float, r: float) -> float:
    """Equilateral triangle pointing to +y."""
    k = math.sqrt(3.0)
    px, py = abs(x) - r, y + r / k
    if px + k * py > 0:
        px, py = (px - k * py) / 2, (-k * px - py) / 2
    px -= min(max(px, -2 * r), 0.0)
    d = math.sqrt(px * px + py * py)
    return -d if py > 0 else (d if py < 0 else 0.0)


@numba.njit(**_JIT)
def _star(x: float, y: float) -> float:
    # polar approximation: distance to a 5-point star's radius profile (scaled to ~unit gradient)
    a = math.atan2(x, y)
    a = a - _SECTOR * math.floor(a / _SECTOR) - _SECTOR / 2
    radius = 0.42 + 0.55 * (abs(a) / (_SECTOR / 2)) ** 1.3
    return (math.sqrt(x * x + y * y) - radius) * 0.7


@numba.njit(**_JIT)
def sdf(label: int, x: float, y: float) -> float:
    """Signed distance of class ``label`` (index into ``procedural.CLASSES``) at (x, y)."""
    if label == 0:  # disk
        return _circle(x, y, 0.8)
    if label == 1:  # square
        return _box(x, y, 0.68, 0.68)
    if label == 2:  # triangle
        return _triangle(x, y + 0.2, 0.95)
    if label == 3:  # star
        return _star(x, y)
    if label == 4:  # cross
        return min(_box(x, y, 0.9, 0.27), _box(x, y, 0.27, 0.9))
    if label == 5:  # ring
        return abs(_circle(x, y, 0.65)) - 0.25
    if label == 6:  # crescent
        return max(_circle(x, y, 0.9), -_circle(x - 0.45, y, 0.7))
    if label == 7:  # dumbbell
        ends = min(_circle(x + 0.62, y, 0.33), _circle(x - 0.62, y, 0.33))
        return min(ends, _box(x, y, 0.6, 0.11))
    if label == 8:  # arrow, pointing to +x
        return min(_triangle(-y, x - 0.25, 0.55), _box(x + 0.35, y, 0.5, 0.13))
    # tee
    return min(_box(x, y - 0.55, 0.85, 0.2), _box(x, y + 0.2, 0.2, 0.62))


@numba.njit(**_JIT)
def _texture(kind: int, u: float, v: float, freq: float, ca: float, sa: float,
             phase: float) -> float:
    """Texture value in [0, 1] at object coordinates (u, v), direction (cos, sin) = (ca, sa)."""
    along = u * ca + v * sa
    across = -u * sa + v * ca
    if kind == 0:  # stripes
        t = 0.5 + 2.0 * math.sin(freq * math.pi * along + phase)
    elif kind == 1:  # checker
        t = 0.5 + 4 * math.sin(freq * 2.2 * along) * math.sin(freq * 2.2 * across)
    elif kind == 2:  # dots
        cu = along * freq * 0.8 + phase
        cu = cu - math.floor(cu) - 0.5
        cv = across * freq * 0.8
        cv = cv - math.floor(cv) - 0.5
        t = (0.3 - math.sqrt(cu * cu + cv * cv)) * 8 + 0.5
    else:  # gradient
        t = 0.5 + 0.6 * along
    return min(max(t, 0.0), 1.0)


@numba.njit(**_JIT)
def _mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of a counter."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(**_JIT)
def _noise(key: np.uint64, counter: int) -> float:
    """Approximately standard-normal value for (image key, counter)."""
    h = _mix64(np.uint64(key) + np.uint64(counter))
    m = np.uint64(0xFFFF)
    total = (h & m) + ((h >> np.uint64(16)) & m) + ((h >> np.uint64(32)) & m) + (h >> np.uint64(48))
    return (float(total) - _NOISE_MEAN) / _NOISE_STD


@numba.njit(**_JIT)
def _clutter(img: np.ndarray, occl: np.ndarray, kind: int, ccx: float, ccy: float, s: float,
             rot: float, color: np.ndarray) -> None:
    """Composite one clutter shape (ellipse or bar) onto ``img`` (size, size, 3); max into occl.

    Both shapes lie within 1.84 units of their centre and alpha is 0 from 0.5 px outside, so
    only the pixels of that bounding square are visited.
    """
    size = img.shape[0]
    cos_r, sin_r = math.cos(rot), math.sin(rot)
    reach = 1.84 * s + 0.7 / size
    y_lo, y_hi = max(int((ccy - reach) * size), 0), min(int((ccy + reach) * size) + 1, size)
    x_lo, x_hi = max(int((ccx - reach) * size), 0), min(int((ccx + reach) * size) + 1, size)
    for y in range(y_lo, y_hi):
        dy = (y + 0.5) / size - ccy
        for x in range(x_lo, x_hi):
            dx = (x + 0.5) / size - ccx
            u = (cos_r * dx + sin_r * dy) / s
            v = (-sin_r * dx + cos_r * dy) / s
            if kind == 0:
                d = math.sqrt((u / 1.4) ** 2 + v * v) - 1
            else:
                d = _box(u, v, 1.8, 0.35)
            a = min(max(0.5 - d * s * size, 0.0), 1.0)
            if a > 0:
                for ch in range(3):
                    img[y, x, ch] = img[y, x, ch] * (1 - a) + color[ch] * a
                occl[y, x] = max(occl[y, x], a)


@numba.njit(**_JIT)
def render_into(
    out: np.ndarray, mask: np.ndarray, bank: np.ndarray, photo: np.ndarray, row0: np.ndarray,
    col0: np.ndarray, flip: np.ndarray, crop: int, gain: np.ndarray, offset: np.ndarray,
    c_on: np.ndarray, c_front: np.ndarray, c_kind: np.ndarray, c_cx: np.ndarray,
    c_cy: np.ndarray, c_size: np.ndarray, c_rot: np.ndarray, c_color: np.ndarray,
    label: np.ndarray, scale: np.ndarray, rotation: np.ndarray, aspect: np.ndarray,
    cx: np.ndarray, cy: np.ndarray, color1: np.ndarray, color2: np.ndarray,
    outline_color: np.ndarray, outline_px: np.ndarray, texture: np.ndarray,
    tex_freq: np.ndarray, tex_angle: np.ndarray, tex_phase: np.ndarray, shade: np.ndarray,
    noise_seed: np.ndarray,
) -> None:
    """Render images into ``out`` (n, size, size, 3) float32 and ``mask`` (n, size, size) bool.

    Per-image parameters are (n,) arrays, (n, 3) colours, (n, k) clutter slots, (n, k, 3)
    clutter colours; ``bank`` (photos, side, side, 3) background photographs; ``row0``/``col0``
    top-left corner of each (crop x crop) background crop, resampled to the image size.
    """
    n, size = out.shape[0], out.shape[1]
    img = np.empty((size, size, 3))  # one image in float64, composited in place
    alpha = np.empty((size, size))  # object coverage
    occl = np.empty((size, size))  # coverage by clutter (only the front clutter's is kept)
    for i in range(n):
        bg = bank[photo[i]]
        total = 0.0
        for y in range(size):
            r = row0[i] + y * crop // size
            for x in range(size):
                k = x * crop // size
                col = col0[i] + (crop - 1 - k if flip[i] else k)
                for ch in range(3):
                    img[y, x, ch] = bg[r, col, ch]
                    total += bg[r, col, ch]
        # the photo's contrast lowered about its own mean (and its brightness shifted): the
        # object stays the most salient thing while the background is a natural texture
        m = total / (size * size * 3)
        for y in range(size):
            for x in range(size):
                for ch in range(3):
                    img[y, x, ch] = m + gain[i] * (img[y, x, ch] - m) + offset[i]
        for j in range(c_on.shape[1]):
            if c_on[i, j] and not c_front[i, j]:
                _clutter(img, occl, c_kind[i, j], c_cx[i, j], c_cy[i, j], c_size[i, j],
                         c_rot[i, j], c_color[i, j])

        # object coordinates: translate, rotate, scale (y up; aspect stretch)
        s = scale[i]
        cos_o, sin_o = math.cos(rotation[i]), math.sin(rotation[i])
        tex_cos, tex_sin = math.cos(tex_angle[i]), math.sin(tex_angle[i])
        reach = SHAPE_RADIUS[label[i]] + 0.5 / (SDF_SLOPE[label[i]] * s * size) + 1e-6
        for y in range(size):
            dy = -((y + 0.5) / size - cy[i])
            for x in range(size):
                dx = (x + 0.5) / size - cx[i]
                u = (cos_o * dx + sin_o * dy) / s * aspect[i]
                v = (-sin_o * dx + cos_o * dy) / s / aspect[i]
                if u * u + v * v >= reach * reach:
                    alpha[y, x] = 0.0
                    continue
                d_px = sdf(label[i], u, v) * s * size
                a = min(max(0.5 - d_px, 0.0), 1.0)
                alpha[y, x] = a
                if a > 0:
                    interior = min(max(0.5 - (d_px + outline_px[i]), 0.0), 1.0)
                    t = _texture(texture[i], u, v, tex_freq[i], tex_cos, tex_sin, tex_phase[i])
                    shading = 1 + shade[i, 0] * u + shade[i, 1] * v
                    for ch in range(3):
                        fill = (color1[i, ch] + (color2[i, ch] - color1[i, ch]) * t) * shading
                        obj = outline_color[i, ch] + (fill - outline_color[i, ch]) * interior
                        img[y, x, ch] = img[y, x, ch] * (1 - a) + obj * a

        occl[:] = 0.0  # the clutter behind the object does not hide it
        for j in range(c_on.shape[1]):
            if c_on[i, j] and c_front[i, j]:
                _clutter(img, occl, c_kind[i, j], c_cx[i, j], c_cy[i, j], c_size[i, j],
                         c_rot[i, j], c_color[i, j])

        # visible object mask; a little pixel noise, hashed from the image's own seed
        key = _mix64(np.uint64(noise_seed[i]))
        for y in range(size):
            for x in range(size):
                mask[i, y, x] = alpha[y, x] * (1 - occl[y, x]) > 0.5
                base = 3 * (y * size + x)
                for ch in range(3):
                    value = img[y, x, ch] + 0.015 * _noise(key, base + ch)
                    out[i, y, x, ch] = min(max(value, 0.0), 1.0)

"""Up-front checks on arrays so errors name the problem instead of failing deep in numpy."""

from __future__ import annotations

import numpy as np

from cortexmap.errors import CortexmapError


def as_finite_array(x, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a float64 array, checking its dimensionality and that it has no NaN/inf."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CortexmapError(f"{name} must be numeric array-like; got {type(x).__name__}.") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise CortexmapError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions; got shape "
                f"{arr.shape}."
            )
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CortexmapError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index {idx}); remove or "
            "impute them before the analysis."
        )
    return arr


def check_conditions(n: int, name: str, minimum: int = 3) -> None:
    if n < minimum:
        raise CortexmapError(
            f"{name} has {n} condition(s); RSA needs at least {minimum} conditions (stimuli)."
        )


def check_same_conditions(n_a: int, n_b: int, name_a: str, name_b: str) -> None:
    if n_a != n_b:
        raise CortexmapError(
            f"{name_a} has {n_a} conditions but {name_b} has {n_b}; both must describe the same "
            "stimuli in the same order."
        )

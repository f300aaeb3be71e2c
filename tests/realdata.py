"""Real reference data in tests: skip with the reason when absent, fail when it is required.

``CORTEXMAP_REQUIRE_DATA=1`` (set by CI) turns the skip into a failure, so a CI machine that
lost its copy of ``../shared/data`` cannot pass by skipping the real-data tests.
"""

from __future__ import annotations

import functools
import os

import pytest

from cortexmap.datasets import DataNotFoundError

REQUIRE_ENV = "CORTEXMAP_REQUIRE_DATA"


@functools.cache
def _fetch(name: str, size: int | None):
    from cortexmap.datasets import FETCHERS

    return FETCHERS[name](download=False, size=size)


def real_data(name: str, size: int | None = None):
    """The fetched data set ``name`` (cached per process), or skip / fail when it is absent."""
    try:
        return _fetch(name, size)
    except DataNotFoundError as exc:  # any other error is a bug, never a skip
        message = (f"real data set {name!r} is not available here (put it in ../shared/data, "
                   f"set CORTEXMAP_DATA, or pass data_dir): {str(exc).splitlines()[0]}")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message)

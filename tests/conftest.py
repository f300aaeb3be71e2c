"""Shared test set-up: fixed seeds, one torch thread (CI has 2 cores), headless matplotlib."""

import os

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("CORTEXMAP_NO_PROGRESS", "1")
os.environ.setdefault("CORTEXMAP_OFFLINE", "1")  # tests never download weights


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def kriegeskorte92():
    """The 92-image set (skips, or fails with CORTEXMAP_REQUIRE_DATA=1, when absent)."""
    from tests.realdata import real_data

    return real_data("kriegeskorte92")


@pytest.fixture(scope="session")
def algonauts78():
    """The Algonauts 78-image set (skips, or fails with CORTEXMAP_REQUIRE_DATA=1, when absent)."""
    from tests.realdata import real_data

    return real_data("algonauts78")

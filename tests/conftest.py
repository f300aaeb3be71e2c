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

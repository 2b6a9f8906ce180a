"""Shared fixtures: one supernet built from the shipped YAML and one tiny synthetic dataset per test session."""

import pytest

from helpers import SUPERNET_YAML


@pytest.fixture(scope="session")
def supernet():
    from nas_plugin.supernet import load_supernet

    return load_supernet(SUPERNET_YAML)


@pytest.fixture(scope="session")
def space(supernet):
    from nas_plugin.supernet import space_from_model

    return space_from_model(supernet)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 6-class synthetic dataset: 8 train and 4 val images at 64 px."""
    from nas_plugin.synthetic_data import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "tiny", train=8, val=4, imgsz=64, seed=0)

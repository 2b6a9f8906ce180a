"""Shared fixtures: one supernet built from the shipped YAML and one tiny synthetic dataset per test session."""

import pytest

from helpers import SUPERNET_YAML, TINY_SUPERNET


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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(YAML path, model, space) of a 2-class supernet small enough to time every table entry in seconds."""
    from nas_plugin.supernet import load_supernet, space_from_model

    path = tmp_path_factory.mktemp("tiny") / "tiny-supernet.yaml"
    path.write_text(TINY_SUPERNET.format(nc=2))
    model = load_supernet(path)
    return path, model, space_from_model(model)


@pytest.fixture(scope="session")
def tiny_lut(tiny, tmp_path_factory):
    """An OpenVINO latency table of `tiny` at 64 px, one round per entry."""
    from nas_plugin.backends import get_backend
    from nas_plugin.lut_build import build_lut

    path, model, _ = tiny
    out = tmp_path_factory.mktemp("lut") / "lut.json"
    build_lut(model, 64, get_backend("openvino"), out, calib_subnets=3, source=path, rounds=1)
    return out

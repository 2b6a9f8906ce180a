"""The search over input sizes: tables in one unit (`build_lut --units-of`), their checks, and the tool end to end."""

import copy
import json

import pytest

from helpers import tiny_search_tables, tool
from nas_plugin.backends import get_backend
from nas_plugin.errors import NASError
from nas_plugin.files import write_json
from nas_plugin.lut import load_lut, predict_us, units_id
from nas_plugin.lut_build import build_lut
from nas_plugin.size_search import check_tables, trained_sizes, warn_untrained_sizes
from nas_plugin.space import min_arch
from nas_plugin.supernet import load_supernet, space_from_model


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory, tiny_data):
    """(supernet YAML, table at 64 px, table at 96 px in the 64 px table's units, table at 96 px alone)."""
    yaml_path, tables = tiny_search_tables(tmp_path_factory.mktemp("sizes"), (64, 96), units_of_first=True)
    _, alone = tiny_search_tables(tmp_path_factory.mktemp("alone"), (96,))
    return yaml_path, tables[64], tables[96], alone[96]


def test_a_table_built_units_of_another_shares_its_unit(two_sizes):
    _, lut64, lut96, alone = two_sizes
    t64, t96 = load_lut(lut64), load_lut(lut96)
    assert units_id(t96) == units_id(t64) == {"imgsz": 64, "date": t64["meta"]["date"]}
    assert t96["reference"]["units_of"] == units_id(t64) and t96["reference"]["relative_to_reference"]
    assert units_id(load_lut(alone)) == {"imgsz": 96, "date": load_lut(alone)["meta"]["date"]}
    assert [t["meta"]["imgsz"] for t in check_tables([lut64, lut96])] == [64, 96]


def test_tables_that_cannot_be_compared_are_refused(two_sizes, tmp_path):
    _, lut64, lut96, alone = two_sizes
    with pytest.raises(NASError, match="are not in one unit .* build one of them with `tools/build_lut.py --units-of"):
        check_tables([lut64, alone])
    with pytest.raises(NASError, match=r"more than one table at imgsz \[64\]; give one table per input size"):
        check_tables([lut64, lut64])
    other = copy.deepcopy(load_lut(lut96))
    other["meta"]["device_name"] = "another CPU"
    write_json(tmp_path / "other.json", other)
    with pytest.raises(NASError, match=r"other \['device_name'\] than .*lut64.json \(\['another CPU'\]"):
        check_tables([lut64, tmp_path / "other.json"])


def test_units_of_another_supernet_or_device_is_refused(two_sizes, tmp_path):
    yaml_path, lut64, _, _ = two_sizes
    other = copy.deepcopy(load_lut(lut64))
    other["meta"]["precision"] = "f16"
    with pytest.raises(NASError, match=r"--units-of: that table was measured with other \['precision'\]"):
        build_lut(load_supernet(yaml_path), 96, get_backend("onnxruntime"), tmp_path / "t.json", units_of=other)
    assert not (tmp_path / "t.json").exists()


def _search(two_sizes, data, out, luts, budget):
    yaml_path = two_sizes[0]
    args = ["--weights", yaml_path, "--data", data, "--lut", *luts, "--latency-budget", budget, "--out", out]
    return tool("search.py", *args, "--population", 4, "--generations", 1, "--calib-batches", 1, cwd=out.parent)


def test_search_over_two_sizes_hands_over_the_best_at_its_size(two_sizes, tiny_data, tmp_path):
    from ultralytics import YOLO

    _, lut64, lut96, _ = two_sizes
    out = tmp_path / "s"
    proc = _search(two_sizes, tiny_data, out, [lut64, lut96], 1000)
    assert proc.returncode == 0, proc.output
    for imgsz in (64, 96):
        assert (out / f"imgsz{imgsz}" / "best" / "model.pt").is_file()
        search_args = json.loads((out / f"imgsz{imgsz}" / "search_args.json").read_text())
        assert search_args["imgsz"] == imgsz
    front = json.loads((out / "pareto.json").read_text())["front"]
    fronts = [json.loads((out / f"imgsz{n}" / "pareto.json").read_text())["front"] for n in (64, 96)]
    every = [r for f in fronts for r in f]
    best = max(every, key=lambda r: r["map50_95"])  # a 1000 ms budget: every timed subnet meets it
    assert json.loads((out / "best" / "arch.json").read_text()) == best["arch"]
    assert {r["imgsz"] for r in front} <= {64, 96} and (out / "pareto.png").is_file()
    assert all(a["measured_ms"] < b["measured_ms"] and a["map50_95"] < b["map50_95"] for a, b in zip(front, front[1:]))
    picked = max(front, key=lambda r: r["map50_95"])
    assert YOLO(str(out / "best" / "model.pt")).overrides["imgsz"] == picked["imgsz"]  # yolo val/predict/export's size
    assert f"copied to {out / 'best'}" in proc.output


def test_a_size_whose_smallest_subnet_exceeds_the_budget_is_left_out(two_sizes, tiny_data, tmp_path):
    yaml_path, lut64, lut96, _ = two_sizes
    space = space_from_model(load_supernet(yaml_path))
    smallest = {n: predict_us(load_lut(p), space, min_arch(space)) / 1000 for n, p in ((64, lut64), (96, lut96))}
    assert smallest[64] < smallest[96]
    out = tmp_path / "s"
    proc = _search(two_sizes, tiny_data, out, [lut96, lut64], (smallest[64] + smallest[96]) / 2)
    assert proc.returncode == 0, proc.output
    assert "search: imgsz 96 left out: --latency-budget" in proc.output
    assert not (out / "imgsz96" / "history.csv").exists() and (out / "best" / "model.pt").is_file()
    below = _search(two_sizes, tiny_data, tmp_path / "b", [lut64, lut96], smallest[64] / 2)
    assert below.returncode == 2 and "no input size of [64, 96] has a subnet within the budget" in below.stderr


def test_sizes_a_supernet_trained_at_are_its_imgsz_and_what_multi_scale_draws():
    import types

    import torch

    def supernet(multi_scale):
        args = {"imgsz": 160, "multi_scale": multi_scale}
        return types.SimpleNamespace(args=args, stride=torch.tensor([8, 16, 32.0]))

    assert trained_sizes(supernet(0.0)) == [160]
    assert trained_sizes(supernet(0.2)) == [128, 160, 192]  # detect/train.py: randrange(128, 224) // 32 * 32
    said = []
    log = types.SimpleNamespace(warning=said.append)
    warn_untrained_sizes(supernet(0.2), [160, 192], log)
    assert said == []
    warn_untrained_sizes(supernet(0.0), [160, 192], log)
    assert said and said[0].startswith("search: the supernet was trained at imgsz [160] only, so subnets at [192]")

"""Latency backends, table building (with resume), prediction, refusal of foreign tables, validation report."""

import json
from pathlib import Path

import pytest
import torch

from helpers import SUPERNET_YAML, restated_prediction, tool
from nas_plugin import lut as L
from nas_plugin import space as S
from nas_plugin.backends import get_backend
from nas_plugin.errors import NASError
from nas_plugin.extract import extract
from nas_plugin.lut_build import build_lut
from nas_plugin.lut_report import error_summary, validate_lut
from nas_plugin.supernet import fingerprint, load_supernet, space_from_model
from nas_plugin.timing import export_onnx

FAST = dict(rounds=1)


def _tiny_onnx(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    path = str(tmp_path / "tiny.onnx")
    return path, export_onnx(module, [(1, 3, 32, 32)], path)


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_cpu_backends_measure_for_real(tmp_path, name):
    path, inputs = _tiny_onnx(tmp_path)
    backend = get_backend(name, precision="f32")
    stats = backend.measure(path, inputs, warmup=3, repeats=20)
    assert stats["warmup"] == 3 and stats["repeats"] == 20
    assert 0 < stats["min_us"] <= stats["median_us"] and stats["std_us"] >= 0 and stats["iqr_us"] >= 0
    assert backend.info["precision"] == "f32" and backend.info["version"] and backend.info["device_name"]
    assert backend.info["threads"] >= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("tflite",), "unknown backend 'tflite'; choose from ['openvino', 'onnxruntime', 'tensorrt']"),
        (("onnxruntime", None, "f16"), "backend onnxruntime does not support precision 'f16'; choose from ['f32']"),
        (
            ("openvino", None, "int4"),
            "backend openvino does not support precision 'int4'; choose from ['f32', 'f16', 'bf16']",
        ),
        (("openvino", "NPU7"), "OpenVINO device 'NPU7' is not available here; available devices:"),
    ],
)
def test_bad_backend_settings_are_named(args, message):
    with pytest.raises(NASError) as e:
        get_backend(*args)
    assert message in str(e.value)


def test_timing_against_a_table_of_another_device_model_warns(monkeypatch):
    """Tables and budgets are per device model (YOLO11n timed 0.92x YOLOv8n on one CPU model, 1.005x on another):
    timing against a table measured elsewhere says so, naming both devices; on the same device it says nothing."""
    from ultralytics.utils import LOGGER

    from nas_plugin.timing import backend_for

    said = []
    monkeypatch.setattr(LOGGER, "warning", said.append)
    meta = {"backend": "onnxruntime", "device": "CPU", "precision": "f32", "threads": None}
    here = backend_for({"meta": {**meta, "device_name": None}}).info["device_name"]
    assert not said
    backend_for({"meta": {**meta, "device_name": here}})
    assert not said
    backend_for({"meta": {**meta, "device_name": "Some Other CPU @ 2.0GHz"}})
    assert len(said) == 1 and "'Some Other CPU @ 2.0GHz'" in said[0] and repr(here) in said[0]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a GPU is present: the TensorRT path runs in test_tensorrt_on_gpu"
)
def test_tensorrt_without_gpu_is_a_clear_error():
    with pytest.raises(NASError, match="backend tensorrt needs"):
        get_backend("tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU (none on this machine)")
def test_tensorrt_on_gpu(tmp_path):
    path, inputs = _tiny_onnx(tmp_path)
    for precision in ("f32", "f16"):
        stats = get_backend("tensorrt", precision=precision).measure(path, inputs, warmup=3, repeats=20)
        assert stats["median_us"] > 0


def test_table_has_every_entry_and_metadata(tiny, tiny_lut):
    _, model, space = tiny
    lut = L.load_lut(tiny_lut, fingerprint(model), 64)
    assert set(lut["entries"]) == set(L.all_keys(space, lut["meta"]))
    assert len(lut["entries"]) == 4 * 2 * 2 + 2 * 2 * 2 + 2  # 4 stages x 2 positions x 2 kernels, CSP, 2 fixed layers
    assert lut["meta"]["fixed_layers"] == [0, 6] and "graph" not in lut["meta"]  # no width: keys name no input width
    meta = lut["meta"]
    assert (meta["backend"], meta["device"], meta["precision"], meta["imgsz"], meta["batch"]) == (
        "openvino",
        "CPU",
        "f32",
        64,
        1,
    )
    assert meta["fingerprint"] == fingerprint(model) and meta["cpu"] and meta["version"] and meta["threads_used"]
    assert len(lut["calibration"]["subnets"]) == 2 + 3  # max, min and 3 spread by size


def test_a_unit_with_per_unit_and_per_block_choices_keys_both():
    """Per-unit choices (one act for the stage) go into every per-block key of their unit, never dropped."""
    unit = {"layer": 3, "depth": [1, 2], "per_unit": {"act": ["relu", "silu"]}, "per_block": {"kernel": [3, 5]}}
    entries = L.unit_entries(unit)
    assert len(entries) == 2 * 2 * 2  # positions x acts x kernels
    assert entries["layer3/b1/act=silu/kernel=5"] == {"position": 1, "act": "silu", "kernel": 5}
    keys = L.unit_keys(unit, {"depth": 2, "act": "silu", "kernel": [3, 5]})
    assert keys == ["layer3/b0/act=silu/kernel=3", "layer3/b1/act=silu/kernel=5"] and set(keys) <= set(entries)


def test_prediction_is_the_calibrated_sum_of_its_parts(tiny, tiny_lut):
    from nas_plugin.lut_build import fit_calibration

    _, model, space = tiny
    lut = L.load_lut(tiny_lut)
    assert lut["meta"]["levels"] == ["P1", "P2", "P3", "P4", "P5", "P5", "head"]  # by output stride at 64 px
    arch = S.random_arch(space, seed=1)
    parts = [lut["entries"][k] for k in L.arch_keys(space, arch, lut["meta"])]
    assert len(parts) == 2 + sum(u["depth"] for u in arch["backbone"]) + 1
    params = sum(e["params"] for e in parts)
    assert params == sum(p.numel() for p in extract(model, arch).parameters())  # every weight, counted once
    cal = lut["calibration"]
    raw = [L.raw_sums(lut, space, c["arch"]) for c in cal["subnets"]]
    fit = fit_calibration(raw, [c["measured_us"] for c in cal["subnets"]])
    assert {k: v for k, v in cal.items() if k != "subnets"} == fit  # the build keeps the fit of its own timings
    assert L.predict_us(lut, space, arch) == pytest.approx(restated_prediction(lut, space, arch))
    del lut["entries"][L.arch_keys(space, arch, {"fixed_layers": []})[0]]
    with pytest.raises(NASError, match="latency table has no entry 'layer1/b0/"):
        L.predict_us(lut, space, arch)


def test_interrupted_build_resumes_and_measures_only_the_rest(tiny, tmp_path, monkeypatch):
    from nas_plugin import lut_build

    path, model, space = tiny
    out = tmp_path / "lut.json"
    backend = get_backend("onnxruntime")
    calls, real = [], lut_build.entry_module

    def flaky(*a, **k):
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user hits Ctrl-C during the sixth entry
        calls.append(a[1:3])
        return real(*a, **k)

    monkeypatch.setattr(lut_build, "entry_module", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_lut(model, 64, backend, out, calib_subnets=0, **FAST)
    partial = json.loads(out.read_text())
    assert len(partial["entries"]) == 5 and partial["reference"]["median_us"] > 0  # all measured so far is on disk
    with pytest.raises(NASError, match="exists; pass --resume"):
        build_lut(model, 64, backend, out, calib_subnets=0, **FAST)
    calls.clear()
    monkeypatch.setattr(lut_build, "entry_module", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    lut = build_lut(model, 64, backend, out, resume=True, calib_subnets=0, **FAST)
    assert len(lut["entries"]) == 26 and len(calls) == 21  # only the rest was measured
    assert lut["reference"] == partial["reference"]  # resumed entries are scaled to the same reference
    with pytest.raises(
        NASError,
        match=r"cannot resume .* other \['backend', 'version'\] \(\['onnxruntime', '[\d.]+'\] vs \['openvino', ",
    ):
        build_lut(model, 64, get_backend("openvino"), out, resume=True, calib_subnets=0, **FAST)
    moved = json.loads(out.read_text())
    moved["meta"]["cpu"] = "Another CPU"  # a table begun on another machine is not finished on this one
    out.write_text(json.dumps(moved))
    with pytest.raises(NASError, match=r"cannot resume .* other \['cpu'\] \(\['Another CPU'\]"):
        build_lut(model, 64, backend, out, resume=True, calib_subnets=0, **FAST)


def test_fingerprint_covers_scale_and_class_count(tmp_path):
    """The n and s scales (and another nc) share a space, but for width choices that round to the same channel
    count at one scale, and not their timings: their fingerprints differ."""
    n, s = (load_supernet(SUPERNET_YAML.with_name(f"yolov8{c}-mbconv-supernet.yaml")) for c in "ns")
    six = tmp_path / "yolov8n-six-supernet.yaml"
    six.write_text(SUPERNET_YAML.with_name("yolov8-mbconv-supernet.yaml").read_text().replace("nc: 80", "nc: 6", 1))
    spaces = [space_from_model(m) for m in (n, s)]
    for space in spaces:
        for _, _, unit in S.units(space):
            unit["per_unit"].pop("width", None)
    assert spaces[0] == spaces[1] and space_from_model(n) != space_from_model(s)
    assert len({fingerprint(n), fingerprint(s), fingerprint(load_supernet(six))}) == 3
    assert fingerprint(n) == fingerprint(load_supernet(SUPERNET_YAML))


def test_foreign_tables_are_refused(tiny, tiny_lut, supernet, tmp_path):
    with pytest.raises(NASError, match="was built for another supernet"):
        L.load_lut(tiny_lut, fingerprint(supernet))
    with pytest.raises(NASError, match="was measured at imgsz 64, not 96"):
        L.load_lut(tiny_lut, fingerprint(tiny[1]), 96)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(NASError, match="is not valid JSON"):
        L.load_lut(bad)
    bad.write_text(json.dumps({"entries": {}}))
    with pytest.raises(NASError, match="is not a nas_plugin latency table"):
        L.load_lut(bad)


def test_validation_report(tiny, tiny_lut, tmp_path):
    _, model, space = tiny
    r = validate_lut(model, L.load_lut(tiny_lut), samples=3, seed=0, rounds=3, out_dir=tmp_path)
    assert r["subnets"] == 5 and [row["name"] for row in r["rows"][:2]] == ["max", "min"]
    assert 0 <= r["within_10pct"] <= 1 and r["mape"] >= 0 and -1 <= r["spearman"] <= 1 and len(r["worst"]) == 5
    assert all(row["measured_us"] > 0 and row["predicted_us"] > 0 for row in r["rows"])
    assert json.loads((tmp_path / "lut_validation.json").read_text())["subnets"] == 5
    assert (tmp_path / "lut_validation.png").read_bytes()[:4] == b"\x89PNG"
    assert r["mean_error"] == pytest.approx(sum(row["error"] for row in r["rows"]) / 5)


def test_error_summary():
    s = error_summary([0.05, -0.2, 0.0, 0.1])
    assert s == pytest.approx({"n": 4, "mean_error": -0.0125, "mape": 0.0875, "worst": -0.2, "within_10pct": 0.75})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "tflite", "--imgsz", "64"], "unknown backend 'tflite'"),
        (["--backend", "openvino", "--imgsz", "100"], "imgsz 100 is not a multiple of the supernet's max stride 32"),
        (
            ["--backend", "onnxruntime", "--precision", "bf16", "--imgsz", "64"],
            "backend onnxruntime does not support precision 'bf16'",
        ),
    ],
)
def test_build_lut_tool_bad_input(tiny, tmp_path, args, message):
    proc = tool("build_lut.py", "--model", tiny[0], *args, "--out", tmp_path / "l.json", cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_unwritable_outputs_are_refused_before_any_measurement(tiny, tiny_lut, tmp_path):
    (tmp_path / "file").write_text("")
    built = tool(
        "build_lut.py",
        "--model",
        tiny[0],
        "--imgsz",
        64,
        "--backend",
        "openvino",
        "--out",
        tmp_path / "file" / "l.json",
        cwd=tmp_path,
    )
    assert built.returncode == 2 and built.stderr.strip().startswith(
        f"build_lut.py: error: --out '{tmp_path / 'file' / 'l.json'}' is not writable"
    )
    folder = tool(
        "build_lut.py", "--model", tiny[0], "--imgsz", 64, "--backend", "openvino", "--out", tmp_path, cwd=tmp_path
    )
    assert (
        folder.returncode == 2
        and folder.stderr.strip() == f"build_lut.py: error: --out '{tmp_path}' is a directory; give a file path."
    )
    checked = tool(
        "validate_lut.py",
        "--lut",
        tiny_lut,
        "--model",
        tiny[0],
        "--samples",
        2,
        "--out",
        tmp_path / "file",
        cwd=tmp_path,
    )
    assert (
        checked.returncode == 2
        and checked.stderr.strip()
        == f"validate_lut.py: error: --out '{tmp_path / 'file'}' is a file; give a directory path."
    )
    assert "measuring" not in built.output + folder.output and "timing" not in checked.output


def test_build_and_validate_tools_end_to_end(tiny, tmp_path):
    lut = tmp_path / "l.json"
    built = tool(
        "build_lut.py",
        "--model",
        tiny[0],
        "--imgsz",
        64,
        "--backend",
        "openvino",
        "--rounds",
        1,
        "--calib-subnets",
        2,
        "--out",
        lut,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.output
    checked = tool(
        "validate_lut.py",
        "--lut",
        lut,
        "--model",
        tiny[0],
        "--samples",
        2,
        "--rounds",
        2,
        "--out",
        tmp_path / "v",
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.output
    assert "within ±10%" in checked.stdout and (tmp_path / "v" / "lut_validation.png").exists()
    foreign = tool("validate_lut.py", "--lut", lut, "--model", SUPERNET_YAML, cwd=tmp_path)
    assert foreign.returncode == 2 and "was built for another supernet" in foreign.stderr


def test_static_model_is_not_a_supernet(tmp_path, supernet, space):
    from nas_plugin.extract import save_subnet

    save_subnet(supernet, S.min_arch(space), tmp_path / "s")
    proc = tool(
        "build_lut.py",
        "--model",
        tmp_path / "s" / "model.pt",
        "--imgsz",
        64,
        "--backend",
        "openvino",
        "--out",
        tmp_path / "l.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "has no elastic layers" in proc.stderr


@pytest.mark.parametrize("value", [float("nan"), -19701.0, 0, "12", None, float("inf")])
def test_tables_with_impossible_timings_are_refused(tiny_lut, tmp_path, value):
    lut = json.loads(Path(tiny_lut).read_text())
    key = next(iter(lut["entries"]))
    if value is None:
        del lut["entries"][key]["median_us"]
    else:
        lut["entries"][key]["median_us"] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(lut))
    with pytest.raises(NASError, match=rf"entry {key!r} has median_us .*; every latency must be a finite number > 0"):
        L.load_lut(bad)
    lut = json.loads(Path(tiny_lut).read_text())
    lut["calibration"]["scale"] = float("nan")
    bad.write_text(json.dumps(lut))
    with pytest.raises(NASError, match="calibration scale is nan; it must be a finite number"):
        L.load_lut(bad)
    lut = json.loads(Path(tiny_lut).read_text())
    lut["calibration"]["scale_by_level"] = {"P3": "0.8"}
    bad.write_text(json.dumps(lut))
    with pytest.raises(NASError, match=r"calibration scale_by_level\['P3'\] is '0.8'; it must be a finite number"):
        L.load_lut(bad)


def test_calibration_fits_relative_error_so_small_subnets_count_too():
    """Whole subnets from 1 to 10 ms whose largest run 10 % over a straight line: an absolute least-squares fit
    follows the large ones and misses the smallest by more; the relative fit keeps the worst relative error lower."""
    import numpy as np

    from nas_plugin.lut_build import fit_calibration

    sums = (1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 10000.0)
    raw = [(us, n) for us, n in zip(sums, (0.7e6, 0.9e6, 2.1e6, 1.6e6, 3.9e6, 3.1e6, 5.8e6))]
    measured = [0.9 * us + 100.0 + (0.1 * us if us >= 8000 else 0.0) for us, _ in raw]
    x = np.array([[us, n, 1.0] for us, n in raw])

    def worst(fit):
        return max(abs((x @ np.array(fit))[i] / m - 1) for i, m in enumerate(measured))

    absolute = np.linalg.lstsq(x, measured, rcond=None)[0]
    raw = [({"all": us}, n) for us, n in raw]  # a table without levels sums all its entries in one
    line = lambda cal: [cal[k] for k in ("scale", "per_param_us", "offset_us")]  # noqa: E731
    assert worst(line(fit_calibration(raw, measured))) < worst(absolute)
    exact = fit_calibration(raw, [1.2 * us["all"] + 3e-4 * n - 50.0 for us, n in raw])
    assert np.allclose(line(exact), (1.2, 3e-4, -50.0)) and "scale_by_level" not in exact
    # timings whose full fit tilts below zero inside the range (here at the smallest sum with the most weights)
    tilted = [({"all": 10.0}, 1e6), ({"all": 20.0}, 1e6), ({"all": 10.0}, 3e6), ({"all": 30.0}, 4e6)]
    scale, per_param, offset = line(fit_calibration(tilted, [40.0, 60.0, 10.0, 20.0]))
    assert per_param == 0.0 and all(scale * us + offset > 0 for us in (10.0, 30.0))


def test_calibration_scales_each_feature_map_level_where_one_scale_misranks():
    """Subnets whose P2 entries keep a fifth of their time alone inside the whole model and whose P4 entries keep all
    of it: one scale for both ranks them wrongly, a scale per level recovers both (pulled a little toward the pooled
    scale) and ranks them right; a level whose scale would fall to 0 or below leaves the pooled fit alone."""
    import numpy as np
    from scipy.stats import spearmanr

    from nas_plugin.lut_build import fit_calibration

    rng = np.random.default_rng(0)
    raw = [({"P2": p2, "P4": p4}, 0.0) for p2, p4 in rng.uniform(500, 3000, size=(22, 2))]
    measured = [0.2 * s["P2"] + 1.0 * s["P4"] + 100.0 for s, _ in raw]
    cal = fit_calibration(raw, measured)
    assert cal["scale_by_level"] == pytest.approx({"P2": 0.2, "P4": 1.0}, abs=0.02)
    predicted = [L.calibrated_us(cal, *r) for r in raw]
    pooled = [L.calibrated_us({k: v for k, v in cal.items() if k != "scale_by_level"}, *r) for r in raw]
    assert spearmanr(predicted, measured).statistic > 0.999 > 0.9 > spearmanr(pooled, measured).statistic
    falling = fit_calibration(raw, [1.0 * s["P4"] - 0.3 * s["P2"] + 2000.0 for s, _ in raw])
    assert "scale_by_level" not in falling


def test_resumed_finished_table_refits_its_calibration_without_timing(tiny, tiny_lut, tmp_path, monkeypatch):
    """A table from before per-level scales (no levels, one scale) gains them on --resume from the subnets it
    already timed: no entry or subnet is timed again, and its date, which names its units, stays."""
    from nas_plugin import lut_build

    _, model, space = tiny
    old = json.loads(Path(tiny_lut).read_text())
    timed = [{"arch": S.random_arch(space, seed=i)} for i in range(20)]
    # whole-subnet timings whose P2 entries keep 30 % of their time alone inside the model
    old["calibration"] = {"scale": 1.0, "per_param_us": 0.0, "offset_us": 50.0, "scale_by_level": {"P2": 0.3}}
    for c in timed:
        c["measured_us"] = restated_prediction(old, space, c["arch"])
    old["calibration"] = {"scale": 0.8, "per_param_us": 0.0, "offset_us": 0.0, "subnets": timed}
    del old["meta"]["levels"]
    out = tmp_path / "old.json"
    out.write_text(json.dumps(old))
    assert "scale_by_level" not in L.load_lut(out)["calibration"]
    monkeypatch.setattr(lut_build, "entry_module", lambda *a, **k: pytest.fail("an entry was timed again"))
    monkeypatch.setattr(lut_build, "measure_subnets", lambda *a, **k: pytest.fail("a subnet was timed again"))
    lut = build_lut(model, 64, get_backend("openvino"), out, resume=True, calib_subnets=3, **FAST)
    assert lut["meta"]["date"] == old["meta"]["date"] and lut["meta"]["levels"][-1] == "head"
    assert [c["measured_us"] for c in lut["calibration"]["subnets"]] == [c["measured_us"] for c in timed]
    cal = lut["calibration"]
    assert min(cal["scale_by_level"], key=cal["scale_by_level"].get) == "P2"

    def worst(c):
        return max(abs(L.calibrated_us(c, *L.raw_sums(lut, space, t["arch"])) / t["measured_us"] - 1) for t in timed)

    assert worst(cal) < worst({k: v for k, v in cal.items() if k != "scale_by_level"}) / 2  # than one scale for all
    assert json.loads(out.read_text())["calibration"] == lut["calibration"]

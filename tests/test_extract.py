"""Subnet extraction: exact outputs, exact parameter counts, standard files that stock Ultralytics uses."""

import copy
import json
import math
import sys

import numpy as np
import pytest
import torch
import yaml

from helpers import CSP_SUPERNET_FILE, SUPERNET_FILE, SUPERNET_YAML, randomize_bn, run_cli, tool, yolo
from nas_plugin import space as S
from nas_plugin.channels import live_indices
from nas_plugin.extract import extract, save_subnet
from nas_plugin.modules import ElasticC2f, ElasticConv, ElasticMBConvStage, ElasticModule, ElasticSPPF
from nas_plugin.supernet import load_supernet, model_graph, named_archs, set_arch, space_from_model

ARCHS = ["max", "min", *range(20)]


def _arch(space, spec):
    return (
        S.max_arch(space) if spec == "max" else S.min_arch(space) if spec == "min" else S.random_arch(space, seed=spec)
    )


def _div8(x):
    return math.ceil(x / 8) * 8


def _detect_params(nc, ch, reg_max):
    """Parameters of YOLOv8's dense Detect head for inputs of `ch` channels."""
    c2, c3 = max(16, ch[0] // 4, 4 * reg_max), max(ch[0], min(nc, 100))
    per_level = [
        c * c2 * 9
        + 2 * c2
        + c2 * c2 * 9
        + 2 * c2
        + c2 * 4 * reg_max
        + 4 * reg_max
        + c * c3 * 9
        + 2 * c3
        + c3 * c3 * 9
        + 2 * c3
        + c3 * nc
        + nc
        for c in ch
    ]
    return sum(per_level) + reg_max  # + the DFL's fixed 1x1 conv


def _active_params(supernet, arch):
    """Parameter count of the weights `arch` uses, computed from the architecture and its layers' live widths."""
    graph = model_graph(supernet)
    live = [len(c) for c in live_indices(graph, space_from_model(supernet), arch)]
    total, units = 0, iter(arch["backbone"] + arch["head"])
    for m, node in zip(supernet.model, graph):
        c1 = live[node["f"][0]] if node["f"] else 3
        c2 = live[m.i]
        if not isinstance(m, ElasticModule):
            follows = hasattr(m, "set_input_live")
            total += (
                _detect_params(m.nc, [live[j] for j in node["f"]], m.reg_max)
                if follows
                else sum(p.numel() for p in m.parameters())
            )
            continue
        a = next(units)
        if isinstance(m, ElasticMBConvStage):
            for i, (k, e) in enumerate(zip(a["kernel"], a["expand"])):
                cin = c1 if i == 0 else c2
                mid = _div8(cin * e)
                total += cin * mid + 2 * mid + mid * k * k + 2 * mid + mid * c2 + 2 * c2
                if m.se:
                    r = _div8(mid // 4)
                    total += 2 * mid * r + r + mid
        elif isinstance(m, ElasticC2f):
            c, k = c2 // 2, a["kernel"]
            h = int(c * a["expand"])
            total += c1 * 2 * c + 4 * c + (2 + a["depth"]) * c * c2 + 2 * c2
            total += a["depth"] * (c * h * k * k + 2 * h + h * c * k * k + 2 * c)
        elif isinstance(m, ElasticConv):
            total += c1 * c2 * m.k**2 + 2 * c2
        elif isinstance(m, ElasticSPPF):
            h = c1 // 2
            total += c1 * h + 2 * h + 4 * h * c2 + 2 * c2
        else:
            c = c2 // 2
            total += c1 * c + 2 * c + a["depth"] * (c * c + 2 * c + c * c * a["kernel"] ** 2 + 2 * c)
            total += c * c + 2 * 2 * c + 2 * c * c2 + 2 * c2
    return total


def _assert_extraction_is_exact(supernet, arch, batch):
    """The extracted subnet is static, owns exactly the active weights and computes what the supernet computes: the
    head's inputs (the supernet's zero-padded to full width) and its outputs."""
    static = extract(supernet, arch)
    assert not any(isinstance(m, ElasticModule) for m in static.modules())
    assert sum(p.numel() for p in static.parameters()) == _active_params(supernet, arch)
    set_arch(supernet, arch)
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = supernet.eval()(x), static.eval()(x)
    # boxes are in pixels: float32 rounding in convs of another shape moves them by up to ~2e-6 of their value
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    for w, g in zip(want[1]["feats"], got[1]["feats"]):
        assert g.std() > 1e-2  # features that carry signal
        torch.testing.assert_close(g, w[:, : g.shape[1]], atol=1e-5, rtol=0)
        assert not w[:, g.shape[1] :].any()


@pytest.fixture(scope="module")
def trained_looking(supernet):
    """The MBConv supernet with BatchNorm away from its init (a copy: the session fixture stays as built)."""
    model = copy.deepcopy(supernet)
    randomize_bn(model)
    return model


@pytest.mark.parametrize("spec", ARCHS)
def test_extracted_subnet_equals_the_active_supernet(trained_looking, space, spec):
    _assert_extraction_is_exact(trained_looking, _arch(space, spec), batch=2)


@pytest.fixture(scope="module")
def csp_supernet(tmp_path_factory):
    """The CSP supernet at scale n with 6 classes: its head's class branch (max(P3 width, nc)) narrows with P3."""
    path = tmp_path_factory.mktemp("csp") / "yolov8n-csp-supernet.yaml"
    path.write_text(CSP_SUPERNET_FILE.read_text().replace("nc: 80", "nc: 6"))
    model = load_supernet(path)
    randomize_bn(model)
    return model


@pytest.mark.parametrize("spec", ["max", "min", "yolov8n", *range(6)])
def test_csp_subnet_equals_the_active_supernet(csp_supernet, spec):
    space = space_from_model(csp_supernet)
    arch = named_archs(csp_supernet)[spec] if spec == "yolov8n" else _arch(space, spec)
    _assert_extraction_is_exact(csp_supernet, arch, batch=1)
    if spec == "min":
        assert csp_supernet.model[-1].live == (64, 32)  # the box branch stays 64 wide, the class branch follows P3


def test_reg_max_reaches_the_head_and_the_subnets_yaml(tmp_path):
    """`reg_max` (a stock YAML key: fewer DFL bins, a narrower box branch, a faster head; README, Benchmarks) sets the
    supernet's head; extraction stays exact and YOLOv8n's arch is stock YOLOv8n built with the same key."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    path = tmp_path / "yolov8n-csp-supernet.yaml"
    path.write_text(CSP_SUPERNET_FILE.read_text().replace("nc: 80", "nc: 6\nreg_max: 8"))
    supernet = load_supernet(path)
    randomize_bn(supernet)
    assert supernet.model[-1].reg_max == 8
    space = space_from_model(supernet)
    for spec in ("max", "min", 0):
        _assert_extraction_is_exact(supernet, _arch(space, spec), batch=1)
    static = extract(supernet, named_archs(supernet)["yolov8n"])
    assert static.yaml["reg_max"] == 8
    stock = DetectionModel({**yaml_model_load("yolov8n.yaml"), "nc": 6, "reg_max": 8}, verbose=False)
    assert {k: v.shape for k, v in static.state_dict().items()} == {k: v.shape for k, v in stock.state_dict().items()}
    assert stock.model[-1].cv2[0][0].conv.out_channels == 32  # max(16, 64 / 4, 4 x 8), against 64 at reg_max 16


@pytest.mark.parametrize("scale, width", [("n", True), ("s", True), ("n", False)])
def test_csp_space_contains_stock_yolov8(scale, width, tmp_path):
    """--arch yolov8<scale> extracts YOLOv8<scale> itself: same layer types, weight names and shapes, FLOPs; also from
    the YAML with every `widths` list set to [1.0] (no width choices, the same named archs)."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    path = CSP_SUPERNET_FILE.with_name(f"yolov8{scale}-csp-supernet.yaml")
    if not width:
        text = CSP_SUPERNET_FILE.read_text()
        assert "[0.5, 0.75, 1.0]" in text
        path = tmp_path / path.name
        path.write_text(text.replace("[0.5, 0.75, 1.0]", "[1.0]"))
    supernet = load_supernet(path)
    space = space_from_model(supernet)
    assert any("width" in u["per_unit"] for _, _, u in S.units(space)) == width
    static = extract(supernet, S.load_arch(f"yolov8{scale}", space, named=named_archs(supernet)))
    stock = YOLO(f"yolov8{scale}.yaml").model
    assert [type(m).__name__ for m in static.model] == [type(m).__name__ for m in stock.model]
    assert {k: v.shape for k, v in static.state_dict().items()} == {k: v.shape for k, v in stock.state_dict().items()}
    assert get_flops(static, 640) == pytest.approx(get_flops(stock, 640), rel=1e-9)
    rows = static.yaml["backbone"] + static.yaml["head"]
    assert [r[2] for r in rows] == [
        r[2] for r in stock.yaml["backbone"] + stock.yaml["head"]
    ]  # C2f, not a plugin class


def test_named_archs_of_a_yaml_without_scale_letter_name_its_first_scale(tmp_path):
    path = tmp_path / "yolov8-csp-supernet.yaml"  # built at scale n (Ultralytics warns and takes the first)
    path.write_text(CSP_SUPERNET_FILE.read_text().replace("nc: 80", "nc: 6"))
    named = named_archs(load_supernet(path))
    assert set(named) == {"yolov8", "yolov8n"} and named["yolov8n"] == named["yolov8"]


def test_named_arch_unknown_lists_the_names(csp_supernet):
    with pytest.raises(Exception, match=r"arch 'yolov9n' is neither 'max', 'min', 'random', 'yolov8', 'yolov8n' nor"):
        S.load_arch("yolov9n", space_from_model(csp_supernet), named=named_archs(csp_supernet))


def test_subnet_yaml_is_a_standard_ultralytics_yaml(supernet, space, tmp_path):
    save_subnet(supernet, S.random_arch(space, seed=5), tmp_path, source="test")
    cfg = yaml.safe_load((tmp_path / "model.yaml").read_text())
    assert set(cfg) == {"nc", "channels", "depth_multiple", "width_multiple", "backbone", "head"}
    modules = [row[2] for row in cfg["backbone"] + cfg["head"]]
    assert not any(m.startswith("Elastic") for m in modules)
    assert modules.count("MBConvStage") == 5 and modules.count("MBottleneckCSP") == 4
    assert json.loads((tmp_path / "arch.json").read_text()) == S.random_arch(space, seed=5)
    ckpt = torch.load(tmp_path / "model.pt", weights_only=False)
    assert ckpt["nas"]["arch"] == S.random_arch(space, seed=5) and ckpt["nas"]["space"] == space


@pytest.fixture(scope="module")
def subnet_dir(supernet, space, tmp_path_factory):
    out = tmp_path_factory.mktemp("subnet")
    save_subnet(supernet, S.random_arch(space, seed=11), out, source=str(SUPERNET_YAML))
    return out


def test_stock_cli_val_predict_and_train_from_yaml(subnet_dir, tiny_data, tmp_path):
    model = subnet_dir / "model.pt"
    val = yolo(
        "val",
        f"model={model}",
        f"data={tiny_data}",
        "imgsz=64",
        "device=cpu",
        "plots=False",
        f"project={tmp_path}",
        "name=val",
        cwd=tmp_path,
    )
    assert val.returncode == 0, val.output
    assert "mAP50-95" in val.output
    images = sorted((tiny_data.parent / "images" / "val").iterdir())
    pred = yolo(
        "predict",
        f"model={model}",
        f"source={images[0]}",
        "imgsz=64",
        "device=cpu",
        f"project={tmp_path}",
        "name=pred",
        cwd=tmp_path,
    )
    assert pred.returncode == 0, pred.output
    train = yolo(
        "train",
        f"model={subnet_dir / 'model.yaml'}",
        f"data={tiny_data}",
        "epochs=1",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "device=cpu",
        "plots=False",
        f"project={tmp_path}",
        "name=train",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.output
    assert (tmp_path / "train" / "weights" / "best.pt").is_file()


def _torch_output(model_pt, x):
    from ultralytics import YOLO

    model = YOLO(str(model_pt)).model.float().eval()
    with torch.no_grad():
        return model(torch.from_numpy(x))[0].numpy()


RUNTIME = """
import sys, numpy as np
fmt, path, x_path, out_path = sys.argv[1:]
x = np.load(x_path)
if fmt == "onnx":
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = s.run(None, {s.get_inputs()[0].name: x})[0]
else:
    import openvino as ov
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    y = compiled(x)[0]
assert not any(m.startswith("nas_plugin") for m in sys.modules), "plugin was imported"
np.save(out_path, y)
"""


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_runs_without_the_plugin_and_matches_pytorch(subnet_dir, tmp_path, fmt):
    exported = yolo(
        "export", f"model={subnet_dir / 'model.pt'}", f"format={fmt}", "imgsz=64", "device=cpu", cwd=tmp_path
    )
    assert exported.returncode == 0, exported.output
    path = subnet_dir / ("model.onnx" if fmt == "onnx" else "model_openvino_model/model.xml")
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run.py"
    script.write_text(RUNTIME)
    proc = run_cli(
        [sys.executable, str(script), fmt, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        cwd=tmp_path,
        env={"NAS_PLUGIN_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.output
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), _torch_output(subnet_dir / "model.pt", x), atol=2e-3, rtol=1e-3
    )


SAFE_LOAD = """
import sys
from ultralytics import YOLO
for path in sys.argv[1:]:
    print(type(YOLO(path).model).__name__, path)
"""


def test_checkpoints_load_under_safe_load(subnet_dir, supernet, tmp_path):
    from ultralytics import __version__

    supernet_pt = tmp_path / "supernet.pt"
    torch.save({"model": supernet, "train_args": {}, "version": __version__}, supernet_pt)
    script = tmp_path / "load.py"
    script.write_text(SAFE_LOAD)
    proc = run_cli(
        [sys.executable, str(script), str(subnet_dir / "model.pt"), str(supernet_pt)],
        cwd=tmp_path,
        env={"ULTRALYTICS_SAFE_LOAD": "1"},
    )
    assert proc.returncode == 0, proc.output
    assert proc.output.count("DetectionModel") == 2


def test_extract_tool_writes_the_three_files(tmp_path):
    proc = tool(
        "extract.py",
        "--weights",
        SUPERNET_YAML,
        "--arch",
        "random",
        "--seed",
        4,
        "--out",
        tmp_path / "sub",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.output
    assert {p.name for p in (tmp_path / "sub").iterdir()} == {"arch.json", "model.yaml", "model.pt"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "nope.json"], "arch 'nope.json' is neither 'max', 'min', 'random' nor an existing JSON file."),
        (["--arch", "bad.json"], "arch['backbone'] has 1 units but the supernet has 7 elastic backbone units."),
        (["--weights", "missing.pt"], "weights file 'missing.pt' does not exist."),
        (["--weights", "missing.yaml"], "model YAML 'missing.yaml' does not exist."),
        (
            ["--weights", "empty.pt"],
            "weights file 'empty.pt' is not a loadable checkpoint (empty, truncated or not an Ultralytics model).",
        ),
        (
            ["--weights", "truncated.pt"],
            "weights file 'truncated.pt' is not a loadable checkpoint (empty, truncated or not an Ultralytics model).",
        ),
        (["--arch", "."], "arch '.' is a directory; pass the arch.json file inside it."),
        (
            ["--arch", "latin1.json"],
            "arch file 'latin1.json' is not UTF-8 text; an arch file is JSON (e.g. a search's best/arch.json).",
        ),
    ],
)
def test_extract_tool_bad_input_is_one_sentence(tmp_path, args, message):
    (tmp_path / "bad.json").write_text(json.dumps({"backbone": [{"depth": 2, "kernel": [3, 3], "expand": [3, 3]}]}))
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"model": None}, tmp_path / "whole.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    (tmp_path / "latin1.json").write_bytes('{"backbone": "é"}'.encode("latin-1"))
    full = (
        ["--weights", SUPERNET_YAML, "--out", tmp_path / "o", *args]
        if "--weights" not in args
        else [*args, "--out", tmp_path / "o"]
    )
    proc = tool("extract.py", *full, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"extract.py: error: {message}"


def test_extract_tool_refuses_a_static_model(subnet_dir, tmp_path):
    proc = tool("extract.py", "--weights", subnet_dir / "model.pt", "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 2
    assert "has no elastic layers" in proc.stderr and "Traceback" not in proc.stderr


def test_extract_tool_recalibrates_bn_on_training_images(tiny_data, tmp_path):
    six = tmp_path / "yolov8n-six-supernet.yaml"
    six.write_text(SUPERNET_FILE.read_text().replace("nc: 80", "nc: 6", 1))
    args = ["--weights", six, "--arch", "min", "--data", tiny_data, "--imgsz", 64, "--calib-batches", 1, "--batch", 4]
    proc = tool("extract.py", *args, "--out", tmp_path / "c", cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert "BatchNorm recalibrated on 4 training images" in proc.stdout
    plain = tool("extract.py", *args[:4], "--out", tmp_path / "p", cwd=tmp_path)
    assert plain.returncode == 0, plain.output
    calibrated, inherited = (torch.load(tmp_path / d / "model.pt", weights_only=False)["model"] for d in ("c", "p"))
    assert calibrated.yaml == inherited.yaml
    bn_c, bn_p = calibrated.model[1].blocks[0].expand.bn, inherited.model[1].blocks[0].expand.bn
    assert torch.equal(bn_c.weight, bn_p.weight) and not torch.equal(bn_c.running_mean, bn_p.running_mean)


def test_extract_tool_refuses_a_dataset_with_other_classes(tiny_data, tmp_path):
    proc = tool("extract.py", "--weights", SUPERNET_YAML, "--data", tiny_data, "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"extract.py: error: dataset {str(tiny_data)!r} has 6 classes but the model has 80; "
        "use the dataset the supernet was trained on."
    )


def test_extract_tool_never_clobbers_outputs_or_its_supernet(tmp_path):
    from helpers import TINY_SUPERNET

    model = tmp_path / "tiny.yaml"
    model.write_text(TINY_SUPERNET.format(nc=2))
    out = tmp_path / "sub"
    assert tool("extract.py", "--weights", model, "--arch", "min", "--out", out, cwd=tmp_path).returncode == 0
    before = (out / "arch.json").read_text()
    again = tool("extract.py", "--weights", model, "--arch", "max", "--out", out, cwd=tmp_path)
    assert again.returncode == 2 and "is not empty; choose another --out, or pass --force" in again.stderr
    assert (out / "arch.json").read_text() == before
    (out / "notes.txt").write_text("mine")
    forced = tool("extract.py", "--weights", model, "--arch", "max", "--out", out, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.output
    assert (out / "arch.json").read_text() != before and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary directory left

    trained = tmp_path / "run"
    trained.mkdir()
    (trained / "model.pt").write_bytes((out / "model.pt").read_bytes())
    from nas_plugin.errors import NASError
    from nas_plugin.extract import save_subnet
    from nas_plugin.supernet import load_supernet, space_from_model

    supernet = load_supernet(model)
    with pytest.raises(NASError, match="would overwrite the supernet"):
        save_subnet(
            supernet, S.min_arch(space_from_model(supernet)), trained, source=str(trained / "model.pt"), exist_ok=True
        )

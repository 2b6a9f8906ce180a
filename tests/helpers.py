"""Helpers shared by the tests: paths, and running commands the way a user would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPERNET_FILE = ROOT / "model_yamls" / "yolov8-mbconv-supernet.yaml"
SUPERNET_YAML = SUPERNET_FILE.with_name("yolov8n-mbconv-supernet.yaml")  # scale n, selected by name as in stock YOLO
CSP_SUPERNET_FILE = ROOT / "model_yamls" / "yolov8-csp-supernet.yaml"


def run_cli(args, cwd, env=None, timeout=600):
    """Run a command as a user would (subprocess, its own cwd); returns the CompletedProcess with merged output."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    return proc


def yolo(*args, cwd, env=None):
    """The stock `yolo` CLI of this environment with key=value arguments."""
    return run_cli([str(Path(sys.executable).with_name("yolo")), *args], cwd=cwd, env=env)


def tool(name, *args, cwd, env=None):
    """One of the project's tools/ scripts."""
    return run_cli([sys.executable, str(ROOT / "tools" / name), *map(str, args)], cwd=cwd, env=env)


TINY_SUPERNET = """
nc: {nc}
backbone:
  - [-1, 1, Conv, [8, 3, 2]] # 0-P1/2
  - [-1, 2, ElasticMBConvStage, [8, 2, False, relu, [3, 5], [3], [1, 2]]] # 1-P2/4
  - [-1, 2, ElasticMBConvStage, [16, 2, True, hardswish, [3, 5], [3], [1, 2]]] # 2-P3/8
  - [-1, 2, ElasticMBConvStage, [16, 2, False, hardswish, [3, 5], [3], [1, 2]]] # 3-P4/16
  - [-1, 2, ElasticMBConvStage, [16, 2, True, hardswish, [3, 5], [3], [1, 2]]] # 4-P5/32
head:
  - [-1, 2, ElasticMBottleneckCSP, [16, [3, 5], [relu, mish], [1, 2]]] # 5
  - [[2, 3, 5], 1, Detect, [nc]] # 6
"""  # a supernet small enough to build latency tables and run searches in seconds; format with nc=


def tiny_search_tables(folder, sizes=(64,), units_of_first=False):
    """(YAML path of a 6-class TINY_SUPERNET, {imgsz: ONNX Runtime table path}) written to `folder`, one timing round
    per entry; with `units_of_first` every later table is built in the first one's unit."""
    from nas_plugin.backends import get_backend
    from nas_plugin.lut import load_lut
    from nas_plugin.lut_build import build_lut
    from nas_plugin.supernet import load_supernet

    yaml_path = Path(folder) / "tiny-supernet.yaml"
    yaml_path.write_text(TINY_SUPERNET.format(nc=6))
    model, backend, tables = load_supernet(yaml_path), get_backend("onnxruntime"), {}
    for imgsz in sizes:
        first = load_lut(tables[sizes[0]]) if tables and units_of_first else None
        tables[imgsz] = Path(folder) / f"lut{imgsz}.json"
        build_lut(model, imgsz, backend, tables[imgsz], calib_subnets=2, rounds=1, source=yaml_path, units_of=first)
    return yaml_path, tables


def randomize_bn(model, seed=0):
    """BatchNorm statistics and affine weights away from their init, so outputs depend on every active weight (a
    wrong channel pick shows)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5, generator=g)
                bn.bias.normal_(0, 0.1, generator=g)
                bn.running_mean.normal_(0, 0.1, generator=g)
                bn.running_var.uniform_(0.5, 2.0, generator=g)


def restated_prediction(lut, space, arch):
    """A table's prediction for `arch` restated from its parts: each entry's time scaled by its layer's feature-map
    level (or the one scale), plus the weight and offset terms."""
    from nas_plugin.lut import arch_entries

    cal, total = lut["calibration"], 0.0
    scales = cal.get("scale_by_level") or {}
    for layer, key in arch_entries(space, arch, lut["meta"]):
        entry = lut["entries"][key]
        total += scales.get(lut["meta"]["levels"][layer], cal["scale"]) * entry["median_us"]
        total += cal["per_param_us"] * entry["params"]
    return total + cal["offset_us"]

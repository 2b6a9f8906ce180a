"""tools/demo.py --quick end to end on a tiny supernet: every promised artefact exists and loads with stock
Ultralytics."""

import json
import sys

import pytest

from helpers import TINY_SUPERNET, run_cli, tool


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    model = d / "tiny-supernet.yaml"
    model.write_text(TINY_SUPERNET.format(nc=6))
    proc = tool("demo.py", "--quick", "--model", model, "--out", d / "out", cwd=d)
    assert proc.returncode == 0, proc.output
    return d / "out", proc


def test_demo_writes_every_artefact(demo):
    out, proc = demo
    for path in (
        "data/data.yaml",
        "supernet/weights/last.pt",
        "supernet/results.png",
        "supernet/nas_epochs.csv",
        "lut.json",
        "lut_validation/lut_validation.json",
        "lut_validation/lut_validation.png",
        "search/history.csv",
        "search/pareto.csv",
        "search/pareto.json",
        "search/pareto.png",
        "search/front/0/model.yaml",
        "search/best/model.pt",
        "finetune/weights/best.pt",
        "finetune/weights/best.onnx",
        "finetune/weights/best_openvino_model",
        "summary.json",
    ):
        assert (out / path).exists(), path
    rows = {r["subnet"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert set(rows) == {"best", "max", "min", "best, fine-tuned"}
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows.values())
    assert rows["best"]["predicted_ms"] <= json.loads((out / "summary.json").read_text())["latency_budget_ms"]
    assert "Summary (OpenVINO CPU f32" in proc.stdout and "$ yolo train model=" in proc.stdout


def test_demo_results_load_with_stock_ultralytics(demo, tmp_path):
    """The searched and fine-tuned subnets predict as .pt, ONNX and OpenVINO in a process without the plugin."""
    out, _ = demo
    image = next((out / "data" / "images" / "val").iterdir())
    code = (
        "import sys\nfrom ultralytics import YOLO\n"
        "for m in sys.argv[2:]:\n"
        "    r = YOLO(m, task='detect').predict(sys.argv[1], imgsz=64, device='cpu', verbose=False)\n"
        "    assert r[0].boxes is not None, m\n"
        "print('ok')\n"
    )
    weights = out / "finetune" / "weights"
    models = [weights / "best.onnx", weights / "best_openvino_model"]
    proc = run_cli(
        [sys.executable, "-c", code, str(image), *map(str, models)], cwd=tmp_path, env={"NAS_PLUGIN_DISABLE": "1"}
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.output
    with_plugin = run_cli(
        [sys.executable, "-c", code, str(image), str(out / "search" / "best" / "model.pt"), str(weights / "best.pt")],
        cwd=tmp_path,
    )
    assert with_plugin.returncode == 0 and "ok" in with_plugin.stdout, with_plugin.output


def test_demo_rerun_reuses_finished_steps(demo, tmp_path):
    out, _ = demo
    model = out.parent / "tiny-supernet.yaml"
    proc = tool("demo.py", "--quick", "--model", model, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert (
        "$ yolo train" not in proc.stdout
        and "$ yolo export" not in proc.stdout
        and "tools/search.py" not in proc.stdout
    )

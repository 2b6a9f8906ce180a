"""The Ultralytics integration: pinned range, patched parse_model, loud failure on changed internals, stock CLI."""

import configparser
import importlib
import sys

import pytest
import ultralytics
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from helpers import ROOT, SUPERNET_FILE, SUPERNET_YAML, run_cli, tool, yolo
from nas_plugin.integration import TESTED_ULTRALYTICS, IntegrationError, _extended_parse_model, is_installed
from nas_plugin.supernet import load_supernet


def test_installed_ultralytics_is_the_tested_range():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = [Requirement(line) for line in cfg["options"]["install_requires"].split("\n") if line.strip()]
    (pin,) = [r for r in pins if r.name == "ultralytics"]
    assert pin.specifier == SpecifierSet(TESTED_ULTRALYTICS)
    assert pin.specifier.contains(ultralytics.__version__)


def test_stock_yolo_builds_the_supernet_with_correct_channels(supernet):
    assert is_installed()
    stage1, detect = supernet.model[1], supernet.model[-1]
    assert stage1.blocks[0].expand.conv.in_channels == 16  # the stem's width reached the stage (base module)
    assert len(stage1.blocks) == 4  # n became the stage's depth (repeat module), not four stacked stages
    assert [seq[0].conv.in_channels for seq in detect.cv2] == [64, 128, 256]


def test_scale_is_chosen_by_file_name_like_stock_models():
    s = load_supernet(SUPERNET_FILE.with_name("yolov8s-mbconv-supernet.yaml"))
    assert s.model[1].blocks[0].project.conv.out_channels == 40  # 24 x 1.5 -> 36, rounded up to a multiple of 8


def _fake_tasks(tmp_path, monkeypatch, name, source):
    """A module standing in for a future `ultralytics.nn.tasks` (the AST patch reads its source file)."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_changed_set_shape_is_named(tmp_path, monkeypatch):
    tasks = _fake_tasks(
        tmp_path,
        monkeypatch,
        "fake_tasks_mod",
        "def parse_model(d, ch, verbose=True):\n    base_modules = set()\n"
        "    repeat_modules = frozenset({int})\n    return d\n",
    )
    with pytest.raises(IntegrationError, match=r"no longer builds \['base_modules'\] as `frozenset\(\{...\}\)`"):
        _extended_parse_model(tasks, {"base_modules": ["X"], "repeat_modules": ["X"]})


def test_changed_detect_sets_are_named(tmp_path, monkeypatch):
    """ElasticDetect joins every set literal naming Detect; a release that names it in fewer or more is refused."""
    tasks = _fake_tasks(
        tmp_path,
        monkeypatch,
        "fake_tasks_mod2",
        "Detect = int\ndef parse_model(d, ch, verbose=True):\n    base_modules = frozenset({int})\n"
        "    if d in frozenset({Detect, float}):\n        return d\n    return d\n",
    )
    with pytest.raises(IntegrationError, match=r"no longer names Detect in 2 set literals \(found 1\)"):
        _extended_parse_model(tasks, {"base_modules": ["X"]}, ["ElasticDetect"])


def test_the_patched_parser_builds_elastic_detect_as_a_head():
    """The real parse_model gives ElasticDetect a head's arguments (reg_max, end2end, input channels) and `legacy`."""
    from nas_plugin.integration import detection_model, elastic_detect_class

    cfg = {
        "nc": 3,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]],
        "head": [[[0, 1], 1, "ElasticDetect", ["nc"]]],
    }
    head = detection_model(cfg).model[-1]
    assert type(head) is elastic_detect_class() and head.legacy
    assert [b[0].conv.in_channels for b in head.cv2] == [16, 32] and head.nc == 3


def test_yolo_train_cli_trains_the_supernet_and_extract_reads_best_pt(tiny_data, tmp_path):
    train = yolo(
        "train",
        f"model={SUPERNET_YAML}",
        f"data={tiny_data}",
        "epochs=1",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "device=cpu",
        "plots=False",
        f"project={tmp_path}",
        "name=sn",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.output
    best = tmp_path / "sn" / "weights" / "best.pt"
    for arch in ("max", "min"):
        out = tmp_path / arch
        proc = tool("extract.py", "--weights", best, "--arch", arch, "--out", out, cwd=tmp_path)
        assert proc.returncode == 0, proc.output
        val = yolo(
            "val",
            f"model={out / 'model.pt'}",
            f"data={tiny_data}",
            "imgsz=64",
            "device=cpu",
            "plots=False",
            f"project={tmp_path}",
            f"name=v{arch}",
            cwd=tmp_path,
        )
        assert val.returncode == 0, val.output


def test_missing_dataset_is_reported(tmp_path):
    proc = yolo(
        "train",
        f"model={SUPERNET_YAML}",
        f"data={tmp_path / 'nope.yaml'}",
        "epochs=1",
        "imgsz=64",
        "device=cpu",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "nope.yaml" in proc.output and "does not exist" in proc.output


def test_every_public_module_imports_on_its_own(tmp_path):
    import subprocess
    import sys

    names = sorted(p.stem for p in (ROOT / "nas_plugin").glob("*.py") if not p.stem.startswith("_"))
    code = "import importlib, subprocess, sys\n" + "".join(
        f"assert subprocess.run([sys.executable, '-c', 'import nas_plugin.{n}']).returncode == 0, '{n}'\n"
        for n in names
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(names) >= 15


def test_ctrl_c_in_a_tool_says_what_was_kept(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(
        "from nas_plugin.cli import run\ndef main(argv):\n    raise KeyboardInterrupt\n"
        "run(main, kept='the table keeps every entry')\n"
    )
    proc = run_cli([sys.executable, str(script)], cwd=tmp_path)
    assert proc.returncode == 130 and proc.stderr.strip() == "tool.py: interrupted; the table keeps every entry."

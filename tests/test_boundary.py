"""The Ultralytics boundary: only nas_plugin/integration.py reaches past Ultralytics' public API, every module imports
on its own, and NAS_PLUGIN_DISABLE=1 means no import patches Ultralytics."""

import ast
import os
import pkgutil
import subprocess
import sys

import pytest

import nas_plugin
from helpers import ROOT

ADAPTER = ROOT / "nas_plugin" / "integration.py"
PUBLIC = {"ultralytics": {"YOLO"}, "ultralytics.utils": {"LOGGER", "TQDM"}}  # what any module may import
MODULES = sorted(f"nas_plugin.{m.name}" for m in pkgutil.iter_modules(nas_plugin.__path__))
PATCHED = "import ultralytics.nn.tasks as t; print(getattr(t.parse_model, '__nas_plugin_original__', None) is not None)"


def reaches_in(path):
    """['line: what'] for each use of Ultralytics beyond PUBLIC in the Python file `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ultralytics":
            extra = {a.name for a in node.names} - PUBLIC.get(node.module, set())
            found += [f"{node.lineno}: from {node.module} import {name}" for name in sorted(extra)]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "ultralytics"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ultralytics."):
            found.append(f"{node.lineno}: {node.value!r}")  # importlib.import_module / __import__ / patch targets
    return found


def test_only_the_adapter_reaches_into_ultralytics():
    files = [p for d in ("nas_plugin", "tools", "benchmarks") for p in sorted((ROOT / d).glob("*.py"))]
    allowed = {("_startup.py", "'ultralytics.nn.tasks'")}  # the start-up hook's import target, named only
    offenders = {
        str(p.relative_to(ROOT)): hits
        for p in files
        if p != ADAPTER and (hits := [h for h in reaches_in(p) if (p.name, h.split(": ", 1)[1]) not in allowed])
    }
    assert not offenders, f"move these behind nas_plugin/integration.py: {offenders}"


def test_the_check_sees_each_kind_of_reach(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from ultralytics import YOLO\nfrom ultralytics.utils import LOGGER, RANK\nimport ultralytics\n"
        "from ultralytics.nn.tasks import DetectionModel\nx = __import__('ultralytics.engine')\n"
    )
    assert reaches_in(src) == [
        "2: from ultralytics.utils import RANK",
        "3: import ultralytics",
        "4: from ultralytics.nn.tasks import DetectionModel",
        "5: 'ultralytics.engine'",
    ]


def _python(code, **env):
    env = {k: v for k, v in os.environ.items() if k != "NAS_PLUGIN_DISABLE"} | env
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("chunk", [MODULES[i::2] for i in range(2)], ids=["even", "odd"])
def test_every_module_imports_alone_and_the_hook_still_patches(chunk):
    """Each module first in a fresh process (no import-order luck), then Ultralytics: patched by the start-up hook."""
    procs = {name: _python(f"import {name}; {PATCHED}") for name in chunk}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"import {name} alone failed:\n{err}"
        assert out.split() == ["True"], f"after import {name}, Ultralytics was not patched:\n{out}{err}"


def test_disable_env_means_no_import_patches():
    proc = _python(f"import {', '.join(MODULES)}; {PATCHED}", NAS_PLUGIN_DISABLE="1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.split() == ["False"], "importing the plugin's modules patched Ultralytics although NAS_PLUGIN_DISABLE=1"

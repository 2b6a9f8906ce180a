"""The interpreter start-up hook: hooks/nas_plugin.pth + nas_plugin/_startup.py (and its packaging in setup.py)."""

import importlib
import inspect
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from nas_plugin import _startup

ROOT = Path(__file__).resolve().parents[1]
PTH = ROOT / "hooks" / "nas_plugin.pth"
STARTUP_MODULES = {"nas_plugin", "nas_plugin._startup"}  # all the hook may import at start-up

PROBE = """
import json, sys
print(json.dumps({"meta_path": [repr(f) for f in sys.meta_path], "modules": sorted(sys.modules)}))
"""


def _env(**overrides):
    env = {k: v for k, v in os.environ.items() if k != _startup.DISABLE_ENV}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(overrides)
    return env


def _run(args, cwd, **env):
    proc = subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _probe(python, cwd, *flags, **env):
    return json.loads(_run([str(python), *flags, "-c", PROBE], cwd, **env).stdout)


def _has_finder(probe):
    return any("nas_plugin._startup.PostImportFinder" in f for f in probe["meta_path"])


def _pth_line():
    lines = [ln for ln in PTH.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("import "), "site.py runs only lines starting with 'import '"
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# (1) + (2): the environment running the tests (`pip install -e ".[dev]"`) has the hook, and it stays light.


def test_pth_is_installed_at_a_site_packages_root():
    roots = [*site.getsitepackages(), site.getusersitepackages()]
    installed = [Path(r, PTH.name) for r in roots if Path(r, PTH.name).is_file()]
    assert installed, f"{PTH.name} not found in {roots}: run `pip install -e .[dev]`"
    assert installed[0].read_text() == PTH.read_text(), f"{installed[0]} is stale: re-run `pip install -e .[dev]`"


def test_fresh_interpreter_has_only_the_light_finder(tmp_path):
    on = _probe(sys.executable, tmp_path)
    off = _probe(sys.executable, tmp_path, NAS_PLUGIN_DISABLE="1")
    assert _has_finder(on)
    extra = set(on["modules"]) - set(off["modules"])
    assert extra <= STARTUP_MODULES, f"the start-up hook imported {sorted(extra - STARTUP_MODULES)}"
    for name in on["modules"]:
        assert name.split(".")[0] not in ("torch", "ultralytics", "numpy"), name
        assert not name.startswith("nas_plugin.") or name in STARTUP_MODULES, name


def test_disable_env_leaves_meta_path_untouched(tmp_path):
    off = _probe(sys.executable, tmp_path, NAS_PLUGIN_DISABLE="1")
    assert not _has_finder(off) and "nas_plugin" not in off["modules"]
    assert _has_finder(_probe(sys.executable, tmp_path, NAS_PLUGIN_DISABLE="0"))


def test_pth_line_semantics_without_site(tmp_path):
    """The .pth line itself (run by hand under -S): installs the finder, obeys the switch, tolerates a stale .pth."""
    code = f"exec({_pth_line()!r})\n" + PROBE
    run = lambda **env: json.loads(_run([sys.executable, "-S", "-c", code], tmp_path, **env).stdout)  # noqa: E731
    assert _has_finder(run(PYTHONPATH=str(ROOT)))
    disabled = run(PYTHONPATH=str(ROOT), NAS_PLUGIN_DISABLE="1")
    assert not _has_finder(disabled) and "nas_plugin" not in disabled["modules"]
    # nas_plugin gone (e.g. a deleted editable checkout) but the .pth left behind: silently nothing.
    assert not _has_finder(run(PYTHONPATH=str(tmp_path)))


def test_real_ultralytics_import_triggers_the_hook_once(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        (finder,) = [f for f in sys.meta_path if type(f).__name__ == "PostImportFinder"]
        assert finder.target == "ultralytics.nn.tasks"
        real_patch, calls = finder.patch, []
        finder.patch = lambda: (calls.append(sys.modules["ultralytics.nn.tasks"].DetectionModel), real_patch())
        from ultralytics import YOLO
        import ultralytics.nn.tasks as tasks
        from nas_plugin.integration import is_installed
        assert len(calls) == 1 and is_installed() and finder not in sys.meta_path
        assert type(tasks.__loader__).__name__ == "SourceFileLoader" and tasks.__spec__.loader is tasks.__loader__
        print("ok")
        """
    )
    assert _run([sys.executable, "-c", code], tmp_path).stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------------------------------
# (3): the finder, with an injected fake target module and fake patch.


@pytest.fixture
def fake_target(tmp_path, monkeypatch):
    """Fresh packages shaped like Ultralytics': `<pkg>/sub/__init__.py` imports `<pkg>.sub.target`, the target.

    Returns the target's full name. As with `ultralytics/nn/__init__.py` importing `ultralytics.nn.tasks`, the patch
    runs while `<pkg>.sub` is itself still being imported.
    """
    pkg = f"nas_fake_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg / "sub").mkdir(parents=True)
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "sub" / "__init__.py").write_text("from .target import f\n")
    (tmp_path / pkg / "sub" / "target.py").write_text("def f():\n    return 1\n\n\nDONE = True  # last line\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(_startup.DISABLE_ENV, raising=False)
    importlib.invalidate_caches()
    saved_meta_path = list(sys.meta_path)
    yield f"{pkg}.sub.target"
    sys.meta_path[:] = saved_meta_path
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


class Patch:
    def __init__(self, target, error=None):
        self.target, self.error, self.calls = target, error, 0

    def __call__(self):
        assert sys.modules[self.target].DONE  # runs after the module finished executing (found via sys.modules)
        self.calls += 1
        if self.error is not None:
            raise self.error


def _ours(target):
    return [f for f in sys.meta_path if isinstance(f, _startup.PostImportFinder) and f.target == target]


def test_patch_runs_once_after_the_target_is_imported(fake_target):
    patch = Patch(fake_target)
    finder = _startup.install(target=fake_target, patch=patch)
    assert sys.meta_path[0] is finder and patch.calls == 0
    assert finder.find_spec("json") is None  # every other import passes straight through
    module = importlib.import_module(fake_target)
    assert patch.calls == 1 and not _ours(fake_target)
    importlib.import_module(fake_target)
    importlib.reload(module)
    assert patch.calls == 1
    # The wrapper loader is gone again: the module looks exactly as if imported normally.
    assert type(module.__loader__).__name__ == "SourceFileLoader" and module.__spec__.loader is module.__loader__
    assert "return 1" in inspect.getsource(module.f)


def test_already_imported_target_is_patched_immediately(fake_target):
    importlib.import_module(fake_target)
    patch = Patch(fake_target)
    assert _startup.install(target=fake_target, patch=patch) is None
    assert patch.calls == 1 and not _ours(fake_target)


def test_install_is_idempotent(fake_target):
    patch = Patch(fake_target)
    assert _startup.install(target=fake_target, patch=patch) is not None
    assert _startup.install(target=fake_target, patch=patch) is None
    assert len(_ours(fake_target)) == 1
    importlib.import_module(fake_target)
    assert patch.calls == 1


@pytest.mark.parametrize("value", ["1", "yes"])
def test_disabled_installs_nothing(fake_target, monkeypatch, value):
    monkeypatch.setenv(_startup.DISABLE_ENV, value)
    patch = Patch(fake_target)
    before = list(sys.meta_path)
    assert _startup.install(target=fake_target, patch=patch) is None
    assert sys.meta_path == before
    importlib.import_module(fake_target)
    assert patch.calls == 0


def test_patch_error_surfaces_on_every_import_and_names_the_switch(fake_target):
    patch = Patch(fake_target, error=ValueError("boom"))
    _startup.install(target=fake_target, patch=patch)
    for attempt in (1, 2):  # never an unpatched module on retry
        with pytest.raises(_startup.NasPluginPatchError, match="NAS_PLUGIN_DISABLE=1") as info:
            importlib.import_module(fake_target)
        assert isinstance(info.value.__cause__, ValueError) and "boom" in str(info.value)
        assert fake_target not in sys.modules and _ours(fake_target) and patch.calls == attempt
    patch.error = None
    importlib.import_module(fake_target)
    assert patch.calls == 3 and not _ours(fake_target)


def test_failing_target_import_propagates_unpatched(fake_target, tmp_path):
    Path(tmp_path, *fake_target.split(".")).with_suffix(".py").write_text("raise KeyError('in target')\n")
    patch = Patch(fake_target)
    _startup.install(target=fake_target, patch=patch)
    with pytest.raises(KeyError, match="in target"):
        importlib.import_module(fake_target)
    assert patch.calls == 0 and _ours(fake_target)


def test_missing_target_fails_like_a_normal_import(fake_target):
    missing = fake_target.rpartition(".")[0] + ".does_not_exist"
    _startup.install(target=missing, patch=Patch(missing))
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(missing)


# ---------------------------------------------------------------------------------------------------------------
# (4): packaging: wheel and PEP 660 editable wheel put the .pth at the site-packages root; uninstall removes it.


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory):
    """The files a build needs, copied so that builds leave nothing (build/, *.egg-info) in the working tree."""
    dst = tmp_path_factory.mktemp("src") / "nas_plugin_src"
    dst.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml"):
        shutil.copy2(ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "hooks", dst / "hooks", ignore=ignore)
    shutil.copytree(ROOT / "nas_plugin", dst / "nas_plugin", ignore=ignore)
    return dst


def _venv(path):
    """A bare venv (no pip inside: this interpreter's pip installs into it with --python); returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], path.parent)
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _check_install_and_uninstall(python, wheel, cwd):
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd).stdout.strip()
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", str(wheel)], cwd)
    assert (purelib / PTH.name).read_text() == PTH.read_text()
    probe = _probe(python, cwd)
    assert _has_finder(probe) and "torch" not in probe["modules"]
    _run([*pip, "uninstall", "-y", "nas_plugin"], cwd)
    assert not (purelib / PTH.name).exists()
    left = [p.name for p in purelib.iterdir() if "nas_plugin" in p.name] if purelib.exists() else []
    assert not left, f"uninstall left {left} behind"  # (pip removes site-packages itself once it is empty)
    assert not _has_finder(_probe(python, cwd))


@pytest.mark.slow
def test_wheel_and_editable_wheel_ship_the_pth(project_copy, tmp_path):
    python = _venv(tmp_path / "venv")
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(project_copy)],
        tmp_path,
    )
    (wheel,) = dist.glob("nas_plugin-*.whl")
    _check_install_and_uninstall(python, wheel, tmp_path)

    # PEP 660: the hook pip calls for `pip install -e` (needs setuptools, which this interpreter has).
    edist = tmp_path / "edist"
    edist.mkdir()
    build = f"import setuptools.build_meta as b; print(b.build_editable({str(edist)!r}))"
    (ewheel,) = edist.glob(_run([sys.executable, "-c", build], project_copy).stdout.strip().splitlines()[-1])
    _check_install_and_uninstall(python, ewheel, tmp_path)

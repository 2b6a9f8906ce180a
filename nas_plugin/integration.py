"""The one place that touches Ultralytics internals.

`parse_model` resolves a YAML row's module with `globals()` of `ultralytics.nn.tasks` and decides channel
bookkeeping from two sets (`base_modules`, `repeat_modules`) it builds locally on every call. We (1) put the plugin's
classes into that namespace, (2) re-compile `parse_model` from its own source with the plugin's classes added to
both sets, (3) allow the classes under `ULTRALYTICS_SAFE_LOAD=1` and (4) add the supernet-training callbacks to
Ultralytics' default callbacks, so the stock `yolo train` samples subnets. Step 2 checks the source's shape first and
raises `IntegrationError` when an Ultralytics release changed it, rather than building wrong models.
"""

import ast
import inspect
import textwrap


TESTED_ULTRALYTICS = ">=8.4.190,<8.5"  # keep in sync with setup.cfg
_SETS = ("base_modules", "repeat_modules")


class IntegrationError(RuntimeError):
    """Ultralytics' internals differ from what the plugin was built against."""


def _extended_parse_model(tasks, additions):
    """Return `tasks.parse_model` re-compiled with `additions[set_name]` class names appended to its module sets."""
    original = getattr(tasks.parse_model, "__nas_plugin_original__", tasks.parse_model)
    try:
        lines, first_line = inspect.getsourcelines(original)
    except (OSError, TypeError) as e:
        raise IntegrationError(f"cannot read the source of ultralytics parse_model ({e}); tested with ultralytics{TESTED_ULTRALYTICS}.") from e
    tree = ast.parse(textwrap.dedent("".join(lines)))
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in additions
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "frozenset"
            and len(node.value.args) == 1
            and isinstance(node.value.args[0], ast.Set)
        ):
            elts = node.value.args[0].elts
            elts.extend(ast.copy_location(ast.Name(id=name, ctx=ast.Load()), elts[-1]) for name in additions[node.targets[0].id])
            found.add(node.targets[0].id)
    if found != set(additions):
        missing = sorted(set(additions) - found)
        raise IntegrationError(
            f"ultralytics parse_model no longer builds {missing} as `frozenset({{...}})`; nas_plugin supports "
            f"ultralytics{TESTED_ULTRALYTICS}. Install a supported version or set NAS_PLUGIN_DISABLE=1."
        )
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at the real lines of tasks.py
    namespace = {}
    exec(compile(tree, inspect.getsourcefile(original), "exec"), tasks.__dict__, namespace)
    patched = namespace[original.__name__]
    patched.__nas_plugin_original__ = original
    return patched


def install():
    """Make the plugin's YAML modules buildable, trainable and loadable by stock Ultralytics (idempotent)."""
    import importlib
    import sys

    import torch

    if not hasattr(sys.modules.get(f"{__package__}.modules"), "YAML_MODULES") and f"{__package__}.modules" in sys.modules:
        return  # modules.py is mid-import (its ultralytics import fired the start-up hook); it calls install() at its end
    from . import elastic_ops, modules

    tasks = importlib.import_module("ultralytics.nn.tasks")  # may run inside ultralytics.nn's own import (start-up hook)

    if getattr(tasks.parse_model, "__nas_plugin_original__", None) is not None:
        return
    for cls in modules.YAML_MODULES:
        setattr(tasks, cls.__name__, cls)
    names = [cls.__name__ for cls in modules.YAML_MODULES]
    tasks.parse_model = _extended_parse_model(tasks, {"base_modules": names, "repeat_modules": [c.__name__ for c in modules.REPEAT_MODULES]})
    package = sys.modules.get("ultralytics.nn")
    if hasattr(package, "parse_model"):  # the package re-exports it; when it is still importing, it will copy ours
        package.parse_model = tasks.parse_model
    torch.serialization.add_safe_globals(plugin_classes(modules, elastic_ops))
    _register_callbacks()


def _register_callbacks():
    """Append the supernet-training callbacks to Ultralytics' defaults, which every Model and trainer copies."""
    from ultralytics.utils.callbacks.base import default_callbacks

    from .training import CALLBACKS

    for event, fn in CALLBACKS.items():
        if fn not in default_callbacks[event]:
            default_callbacks[event].append(fn)


def export_ready(model):
    """Put a model's heads in the state Ultralytics' ONNX exporter uses (decoded boxes, static shapes); returns it."""
    from ultralytics.nn.modules import Detect

    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", False
    return model


def read_model_yaml(path):
    """A model YAML as Ultralytics reads it (a scale letter in the file name selects the scale, as for stock models)."""
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load(path)


def load_checkpoint(path):
    """An Ultralytics checkpoint dict, loaded as `ULTRALYTICS_SAFE_LOAD=1` loads it (`weights_only`, known classes and
    the plugin's only), so reading a run's state never executes code from the file."""
    from ultralytics.nn.tasks import torch_safe_load

    install()
    return torch_safe_load(path, safe_only=True)[0]


def plugin_classes(*mods):
    """Every nn.Module class the plugin defines (what a pickled model may reference)."""
    import torch

    return [
        obj
        for mod in mods
        for obj in vars(mod).values()
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod.__name__
    ]


def is_installed():
    """Whether `install()` has patched the running Ultralytics."""
    import importlib

    tasks = importlib.import_module("ultralytics.nn.tasks")
    return getattr(tasks.parse_model, "__nas_plugin_original__", None) is not None


__all__ = ("IntegrationError", "TESTED_ULTRALYTICS", "export_ready", "install", "is_installed", "load_checkpoint", "read_model_yaml")

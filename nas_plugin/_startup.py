"""Lazy start-up hook: patch Ultralytics only when (and right after) ``ultralytics.nn.tasks`` is imported.

``nas_plugin.pth`` (installed at the site-packages root, source in ``hooks/``) calls :func:`install` at every
interpreter start. That must stay nearly free for processes that never touch Ultralytics, so this module imports
only ``os`` and ``sys`` (both already loaded by ``site``) and :func:`install` merely puts one tiny finder at the
front of ``sys.meta_path``. The finder ignores every import except the target: for the target it takes the real
spec from the finders behind it and wraps its loader, so that once the target module has finished executing the
patch (``nas_plugin.integration.install``) runs and the finder takes itself out of ``sys.meta_path``.

Set ``NAS_PLUGIN_DISABLE=1`` to turn the hook off (nothing is put into ``sys.meta_path``).
"""

import os
import sys

TARGET = "ultralytics.nn.tasks"
DISABLE_ENV = "NAS_PLUGIN_DISABLE"


class NasPluginPatchError(RuntimeError):
    """Raised from the import of the target module when the patch fails; the cause is chained."""


def disabled():
    """True when ``NAS_PLUGIN_DISABLE`` is set to anything but ``""`` or ``"0"`` (the .pth applies the same rule)."""
    return os.environ.get(DISABLE_ENV, "").strip() not in ("", "0")


def _patch_ultralytics():
    from nas_plugin.integration import install as integration_install  # heavy: imported only when needed

    integration_install()


def _run_patch(patch, target):
    """Run the patch; it runs inside the import of `target`'s package, so it must reach modules via sys.modules."""
    try:
        patch()
    except Exception as exc:
        raise NasPluginPatchError(
            f"nas_plugin failed to patch Ultralytics after importing {target!r}: {type(exc).__name__}: {exc}\n"
            f"To run stock Ultralytics without the plugin, set the environment variable {DISABLE_ENV}=1 "
            "(or `pip uninstall nas_plugin`)."
        ) from exc


class _PatchingLoader:
    """Wraps the target's real loader: runs it, then the patch; every other attribute goes to the real loader."""

    def __init__(self, loader, finder):
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name):  # get_source, get_code, get_filename, is_package, get_resource_reader, ...
        if name in ("loader", "finder"):  # not set yet (e.g. during copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec):
        create = getattr(self.loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:
            # Hand the module the real loader back (inspect, linecache, importlib.reload, resources use it).
            module.__loader__ = self.loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self.loader
        # The target executed fine. On patch failure the import fails (importlib drops the module from
        # sys.modules) and the finder stays, so a retried import fails again instead of running unpatched.
        _run_patch(self.finder.patch, self.finder.target)
        self.finder.remove()


class PostImportFinder:
    """``sys.meta_path`` finder that patches ``target`` once, right after it is imported (duck-typed, no ``abc``)."""

    def __init__(self, target, patch):
        self.target = target
        self.patch = patch

    def __repr__(self):
        return f"<nas_plugin._startup.PostImportFinder target={self.target!r}>"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.target:
            return None  # the cost every other import pays: one call and one string compare
        # Ask the finders behind this one (those in front have already said no).
        finders = sys.meta_path
        start = finders.index(self) + 1 if self in finders else 0
        for finder in list(finders[start:]):
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None or finder is self:
                continue
            spec = find_spec(fullname, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if loader is not None and hasattr(loader, "exec_module") and not isinstance(loader, _PatchingLoader):
                spec.loader = _PatchingLoader(loader, self)
            return spec
        return None  # not installed: let the import fail the normal way

    def remove(self):
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


def install(target=TARGET, patch=None):
    """Patch ``target`` now if it is already imported, else install a :class:`PostImportFinder` for it.

    Idempotent (one finder per target). ``patch`` defaults to ``nas_plugin.integration.install``; tests inject a
    fake ``target``/``patch``. Returns the finder, or ``None`` when disabled or already patched/installed.
    """
    if disabled():
        return None
    if patch is None:
        patch = _patch_ultralytics
    if target in sys.modules:
        _run_patch(patch, target)
        return None
    for finder in sys.meta_path:
        if isinstance(finder, PostImportFinder) and finder.target == target:
            return None
    finder = PostImportFinder(target, patch)
    sys.meta_path.insert(0, finder)
    return finder

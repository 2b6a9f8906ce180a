"""Hardware-aware NAS for Ultralytics YOLO detectors.

Kept import-free on purpose: the interpreter start-up hook imports this package in every Python process, so heavy
imports (torch, ultralytics) happen only in the submodules that need them.
"""

__version__ = "0.1.0"


def install():
    """Register the plugin with Ultralytics by hand, for environments where the start-up hook is disabled."""
    from .integration import install as _install

    _install()

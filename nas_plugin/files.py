"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only; a written file gets the usual permissions
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def copy_dir(src, dst):
    """`dst` becomes a copy of directory `src`, swapped in whole: copied beside it, then renamed over it, so a reader
    sees the old `dst` or the new one, never a half-copied one."""
    dst = Path(dst)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp"))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def check_writable(path, flag, is_dir=True):
    """Refuse, before any expensive work, an output (`flag`, e.g. '--out') that cannot be written: a file where a
    directory is wanted or the reverse, or a directory that cannot be created or written to."""
    from .errors import NASError

    path = Path(path)
    if is_dir and path.is_file() or not is_dir and path.is_dir():
        raise NASError(
            f"{flag} {str(path)!r} is a {'file' if is_dir else 'directory'}; "
            f"give a {'directory' if is_dir else 'file'} path."
        )
    folder = path if is_dir else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise NASError(f"{flag} {str(path)!r} is not writable ({e.strerror}).") from None


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data):
    """Write `data` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def pyplot():
    """`matplotlib.pyplot` on the file-only Agg backend (plots are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=None):
    """Lay out `fig`, write it to `path` as PNG atomically, and free it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)

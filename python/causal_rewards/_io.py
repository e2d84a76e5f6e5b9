"""Output files and progress bars, the same for every command.

Files are written whole or not at all: to a temporary file beside the target, then renamed into
place, with the permissions a new file gets from the umask (or the target's own when it exists).
An output file's folder must exist (a typo in it is an error, not a new folder); commands create
their own output folders. ``check_writable`` refuses a target before any work is done.
Progress bars are drawn on stderr, only when asked (by default: when stderr is a terminal).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _target(path) -> Path:
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"output path {text!r} is empty")
    return Path(text)


def check_writable(path) -> None:
    """Raises (naming ``path``) when a file cannot be written there: a folder, a missing folder, or
    no permission."""
    target = _target(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a directory, expected a file path")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise PermissionError(f"{target}: not writable")


def atomic_write(path, data: bytes | str) -> None:
    """Writes ``data`` (text as UTF-8) to ``path`` through a temporary file renamed into place."""
    target = _target(path)
    check_writable(target)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, mode)  # mkstemp makes the file private
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_save(path, save) -> None:
    """Like ``atomic_write`` for writers that take a path: ``save(temporary_path)``, then rename."""
    target = _target(path)
    check_writable(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def show_progress(requested: bool | None) -> bool:
    """Whether to draw progress bars: as requested, else only when stderr is a terminal."""
    return sys.stderr.isatty() if requested is None else bool(requested)


def progress_bar(iterable=None, *, enabled: bool, **options):
    """A tqdm bar on stderr when ``enabled`` and tqdm is installed; otherwise a silent stand-in with
    the same ``update`` / ``set_postfix`` / ``set_postfix_str`` / ``close`` methods."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ModuleNotFoundError:
            pass
        else:
            return tqdm(iterable, file=sys.stderr, **options)
    return _Silent(iterable)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable
        self.n = 0

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, count: int = 1) -> None:
        self.n += count

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

"""Atomic writes: a file or directory appears complete under its name, or not at all.

The one implementation every program of the package writes its user-visible outputs with
(restorations, figures, metrics, exports, converted weights, benchmark results):

- :func:`atomic_write`: a file, as a context manager yielding the open temporary file;
- :func:`write_file`: a file from ``bytes`` or ``str``;
- :func:`write_files`: several files, all staged before any is renamed into place;
- :func:`atomic_directory`: a directory (e.g. an export), built in a temporary sibling.

Temporary files and directories are created beside their target (same file system, so the final
rename is atomic) with the modes a plain ``open(path, "w")`` (0o666) or ``os.makedirs(path)``
(0o777) asks for; the kernel applies the process's umask (and a default ACL, if any) when they
are created, so the results get exactly the modes those plain calls would give. The umask is
never read or changed, so this is safe from any thread. On an exception (or an interrupt) the
temporaries are removed and the targets keep their old content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from typing import IO

FILE_MODE = 0o666  # what open(path, "w") asks for; the umask takes its bits off
DIRECTORY_MODE = 0o777  # what os.makedirs asks for
_ATTEMPTS = 100


def _temporary_name(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")


def _create_file(path: str) -> tuple[int, str]:
    """A new temporary file beside ``path``: ``(descriptor, name)``, mode as ``open`` gives."""
    for _ in range(_ATTEMPTS):
        tmp = _temporary_name(path)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(tmp, flags, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path!r}")


def _create_directory(path: str) -> str:
    """A new temporary directory beside ``path``, mode as ``os.makedirs`` gives."""
    for _ in range(_ATTEMPTS):
        tmp = _temporary_name(path)
        try:
            os.mkdir(tmp, DIRECTORY_MODE)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path!r}")


def _make_parent(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is renamed to ``path``.

    On an exception (or an interrupt) the temporary file is removed and ``path`` keeps its old
    content, so a reader never sees a half-written file. Parent directories are created. The
    file's mode is what ``open(path, "w")`` would give under the current umask.

    Args:
      path: the file to write.
      mode: ``"w"`` (text) or ``"wb"`` (binary).

    Example::

      with atomic_write("metrics.json") as f:
          json.dump(result, f)
      with atomic_write("stats.npz", "wb") as f:
          np.savez(f, mu=mu)
    """
    path = os.fspath(path)
    _make_parent(path)
    handle, tmp = _create_file(path)
    try:
        with os.fdopen(handle, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_file(path: str | os.PathLike, data: bytes | str) -> str:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_write(path, "wb") as f:
        _write(f, data)
    return os.fspath(path)


def _write(f: IO, content) -> None:
    if callable(content):
        content(f)
    else:
        f.write(content.encode() if isinstance(content, str) else content)


def write_files(outputs: Mapping[str | os.PathLike, bytes | str | Callable[[IO], object]]) -> None:
    """Write ``{path: content}``: every file is staged first, then all are renamed.

    ``content`` is ``bytes``, ``str`` (written as UTF-8) or a function that writes the file
    into the binary file object it is given (e.g. ``lambda f: image.save(f, format="PNG")``).
    An interruption while staging leaves none of the targets touched; the renames themselves
    are each atomic.
    """
    staged = []
    try:
        for path, data in outputs.items():
            path = os.fspath(path)
            _make_parent(path)
            handle, tmp = _create_file(path)
            staged.append((tmp, path))
            with os.fdopen(handle, "wb") as f:
                _write(f, data)
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary directory beside ``path`` to fill; on success it becomes ``path``.

    An existing ``path`` is removed just before the rename (``overwrite=True``) or refused up
    front (``FileExistsError``). On an exception the temporary directory is removed and
    ``path`` is untouched. Its mode is what ``os.makedirs(path)`` would give under the current
    umask; write the files inside with plain ``open`` (they are not visible until the rename).

    Example::

      with atomic_directory("runs/demo/export") as tmp:
          with open(os.path.join(tmp, "model.json"), "w") as f:
              json.dump(config, f)
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists")
    _make_parent(path)
    tmp = _create_directory(path)
    try:
        yield tmp
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""Atomic file writes: a file appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is renamed to ``path``.

    On an exception (or an interrupt) the temporary file is removed and ``path`` keeps its old
    content, so a reader never sees a half-written file. Parent directories are created.

    Example::

      with atomic_write("metrics.json") as f:
          json.dump(result, f)
      with atomic_write("stats.npz", "wb") as f:
          np.savez(f, mu=mu)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise

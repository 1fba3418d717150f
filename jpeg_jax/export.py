"""Exported generators: the EMA generator's params + its model config, self-contained.

An export is a directory holding ``model.json`` (format version, ``Generator`` attributes,
metadata such as the training step and JPEG settings) and ``params.msgpack`` (flax
serialization of the parameter tree). It is what ``eval.py``, the decoder CLI, the SM penalty's
frozen MMSE model and the GAN's regression warm start load; never the whole train state.

This module is the file format only. Training writes ``WORKDIR/export`` at the end; to rebuild
an export from a run's latest checkpoint, use ``python -m jpeg_jax.export_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from jpeg_jax import fileio
from jpeg_jax.models import Generator, resolve_dtypes

FORMAT_VERSION = 1
_CONFIG_FILE = "model.json"
_PARAMS_FILE = "params.msgpack"


class ExportError(ValueError):
    """An export directory that is missing, incomplete or not an export."""


@dataclasses.dataclass(frozen=True)
class Exported:
    """A loaded export: ``Generator(**generator)`` applied to ``params``."""

    generator: dict[str, Any]
    params: Any
    metadata: dict[str, Any]

    def build(self, **overrides) -> Generator:
        """The ``Generator`` module (attributes from the export, ``overrides`` on top)."""
        kwargs = resolve_dtypes(self.generator)
        kwargs.update(overrides)
        return Generator(**kwargs)


def save(
    path: str | os.PathLike,
    generator: dict[str, Any],
    params: Any,
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> str:
    """Write an export atomically (a temporary sibling directory renamed into place).

    Args:
      path: output directory.
      generator: ``Generator`` attributes (plain values; dtypes as names or dtypes).
      params: the generator's parameter tree (e.g. the EMA params), on any device.
      metadata: JSON-serialisable extras (step, quality, subsampling, config name, ...).
      overwrite: replace an existing export at ``path``.

    Returns:
      The export directory.
    """
    path = os.fspath(path)
    host_params = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), params)
    config = {
        "format_version": FORMAT_VERSION,
        "generator": resolve_dtypes(generator, names=True),
        "metadata": metadata or {},
    }
    with fileio.atomic_directory(path, overwrite=overwrite) as tmp:
        with open(os.path.join(tmp, _PARAMS_FILE), "wb") as f:
            f.write(flax.serialization.msgpack_serialize(host_params))
        with open(os.path.join(tmp, _CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
    return path


def load(path: str | os.PathLike) -> Exported:
    """Load an export written by :func:`save`.

    Raises:
      ExportError: the directory is missing, incomplete, or from another format version.
    """
    path = os.fspath(path)
    config_path = os.path.join(path, _CONFIG_FILE)
    params_path = os.path.join(path, _PARAMS_FILE)
    if not os.path.isdir(path):
        raise ExportError(f"{path}: no such export directory")
    if not (os.path.isfile(config_path) and os.path.isfile(params_path)):
        raise ExportError(
            f"{path}: not a jpeg_jax export (expected {_CONFIG_FILE} and {_PARAMS_FILE}; "
            "create one with `python -m jpeg_jax.export_checkpoint --workdir RUN --out DIR`)"
        )
    try:
        with open(config_path) as f:
            config = json.load(f)
        with open(params_path, "rb") as f:
            params = flax.serialization.msgpack_restore(f.read())
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{path}: unreadable export ({e})") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: unsupported export format {config.get('format_version')}")
    return Exported(config["generator"], params, config.get("metadata", {}))


if __name__ == "__main__":
    raise SystemExit(
        "jpeg_jax.export is the file format only; to export a training run's latest checkpoint "
        "run: python -m jpeg_jax.export_checkpoint --workdir RUN --out DIR"
    )

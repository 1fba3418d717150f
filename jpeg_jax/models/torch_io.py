"""Reading PyTorch weights for the converters, without making PyTorch a dependency.

:func:`to_numpy` turns a ``torch.Tensor`` (or anything array-like) into float32 NumPy without
importing torch; :func:`load_state_dict` reads a ``.pth`` file (tensors only, no pickled code
executed), importing torch only then. Used by :mod:`jpeg_jax.models.convert` (BasicSR),
:mod:`jpeg_jax.models.convert_inception` (FID Inception) and :mod:`jpeg_jax.models.vgg`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A tensor or array as float32 NumPy (a torch tensor is detached and moved to the CPU)."""
    if hasattr(value, "detach"):  # a torch.Tensor, recognised without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def load_state_dict(path: str | os.PathLike, *, missing: str) -> dict[str, Any]:
    """Read a PyTorch ``.pth`` state dict on the CPU (``weights_only``). Needs PyTorch.

    A checkpoint ``{"state_dict": ...}`` is unwrapped.

    Args:
      path: the ``.pth`` file.
      missing: the message of the ``FileNotFoundError`` when ``path`` is not a file (say where
        the file comes from).

    Raises:
      FileNotFoundError: no file at ``path``.
      ImportError: PyTorch is not installed (the message says how to install it).
      ValueError: the file holds something other than a mapping.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(missing)
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading a .pth needs PyTorch (`pip install torch`, CPU build is enough); "
            "only the one-time weight conversion needs it."
        ) from error
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state_dict, Mapping) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{os.fspath(path)!r} holds a {type(state_dict).__name__}, not a state dict"
        )
    return dict(state_dict)

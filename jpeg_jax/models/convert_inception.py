"""Convert pytorch-fid's FID Inception weights into jpeg_jax's ``.npz`` format (run once).

Get pytorch-fid's published file (the TF FID graph's weights, ported by pytorch-fid) and convert it;
reading a ``.pth`` needs PyTorch, using the result does not::

  curl -LO https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
  python -m jpeg_jax.models.convert_inception pt_inception-2015-12-05-6726825d.pth fid_inception.npz

The output is a plain NumPy ``.npz`` (no pickle) of float32 arrays keyed by the Flax variable path
joined with ``/``: ``params/Mixed_5b/branch1x1/conv/kernel`` (HWIO), ``params/.../bn/scale``,
``params/.../bn/bias``, ``batch_stats/.../bn/mean``, ``batch_stats/.../bn/var``. The classifier
(``fc``), an auxiliary head and BatchNorm step counters are dropped; they are not part of pool3.
:func:`jpeg_jax.models.inception.load_variables` reads it back and checks every key and shape.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jpeg_jax import fileio
from jpeg_jax.models.inception import validate_variables
from jpeg_jax.models.torch_io import load_state_dict, to_numpy

PUBLISHED_SHA256_PREFIX = "6726825d"  # torch.hub's check prefix, part of the published file name
_DROPPED_PREFIXES = ("fc.", "AuxLogits.")
_BATCH_NORM_LEAVES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def convert_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Map a torchvision-``Inception3``-style state dict onto :class:`FIDInceptionV3` variables.

    Args:
      state_dict: ``"Mixed_5b.branch1x1.conv.weight"`` -> OIHW tensor/array, ``"...bn.weight"``,
        ``"...bn.running_var"`` and so on, as in pytorch-fid's ``pt_inception-*.pth``.

    Returns:
      Flat ``"params/Mixed_5b/branch1x1/conv/kernel"`` -> float32 array (HWIO kernels).

    Raises:
      ValueError: an entry that has no place in the network, or a missing/mis-shaped variable.
    """
    flat = {}
    for key, value in state_dict.items():
        if key.startswith(_DROPPED_PREFIXES) or key.endswith(".num_batches_tracked"):
            continue
        module, _, leaf = key.rpartition(".")
        prefix = module.replace(".", "/")
        if module.endswith(".conv") and leaf == "weight":
            flat[f"params/{prefix}/kernel"] = to_numpy(value).transpose(2, 3, 1, 0)
        elif module.endswith(".bn") and leaf in _BATCH_NORM_LEAVES:
            collection, name = _BATCH_NORM_LEAVES[leaf]
            flat[f"{collection}/{prefix}/{name}"] = to_numpy(value)
        else:
            raise ValueError(
                f"Unexpected state-dict entry {key!r}: expected torchvision Inception3 names "
                "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth), e.g. "
                "'Mixed_5b.branch1x1.conv.weight'."
            )
    validate_variables(flat, source="the converted state dict")
    return flat


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a PyTorch ``.pth`` state dict (tensors only, no code executed). Needs PyTorch."""
    return load_state_dict(
        path,
        missing=f"No file at {os.fspath(path)!r}; download pt_inception-2015-12-05-6726825d.pth "
        "from https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights",
    )


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_variables(flat: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``flat`` as an uncompressed ``.npz`` at exactly ``path`` (temp file, then rename)."""
    with fileio.atomic_write(path, "wb") as file:
        np.savez(file, **{key: np.asarray(value, np.float32) for key, value in flat.items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jpeg_jax.models.convert_inception",
        description="Convert pytorch-fid's FID Inception weights (.pth) into jpeg_jax's .npz.",
    )
    parser.add_argument("input", help="pt_inception-2015-12-05-6726825d.pth from pytorch-fid")
    parser.add_argument("output", help="where to write the .npz, e.g. fid_inception.npz")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    if os.path.exists(args.output) and not args.force:
        print(f"error: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    try:
        flat = convert_state_dict(load_torch_state_dict(args.input))
    except (OSError, ImportError, ValueError) as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    digest = sha256_of(args.input)
    if not digest.startswith(PUBLISHED_SHA256_PREFIX):
        print(
            f"warning: sha256 {digest[:8]}... is not pytorch-fid's published file "
            f"({PUBLISHED_SHA256_PREFIX}...); FID values will not be comparable to published ones",
            file=sys.stderr,
        )
    save_variables(flat, args.output)
    count = sum(
        int(np.prod(value.shape)) for key, value in flat.items() if key.startswith("params/")
    )
    print(f"wrote {args.output}: {len(flat)} arrays, {count:,} parameters (sha256 {digest[:8]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

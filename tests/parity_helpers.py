"""Seeded weights and inputs shared by the golden parity tests and ``tests/golden/make_golden.py``.

NumPy only: the generating script runs them in a PyTorch environment, the tests (without torch)
run the same functions and check the result's SHA-256 against the digest stored in the golden
file, so a change of NumPy's random streams is reported as such instead of as a model mismatch.

Every array is drawn from its own ``default_rng([seed, crc32(key)])`` stream, so an array does not
depend on which other keys are drawn or in which order.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zlib
from collections.abc import Iterable, Mapping

import numpy as np

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden"


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def draw(key: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One float32 state-dict entry of a PyTorch model, by its name and shape.

    Conv / linear weights (rank >= 2) are He-normal (std ``sqrt(2 / fan_in)``); BatchNorm
    ``weight`` U(0.5, 1.5), ``bias`` N(0, 0.2), ``running_mean`` N(0, 0.2), ``running_var``
    U(0.5, 2); other biases N(0, 0.05). Random affine BatchNorm statistics make every leaf
    matter, and He scaling keeps activations O(1) through deep networks.
    """
    rng = _rng(seed, key)
    leaf = key.rsplit(".", 1)[-1]
    batch_norm = ".bn." in f".{key}"
    if leaf == "weight" and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif batch_norm and leaf == "weight":
        value = rng.uniform(0.5, 1.5, shape)
    elif batch_norm and leaf in ("bias", "running_mean"):
        value = rng.normal(0.0, 0.2, shape)
    elif batch_norm and leaf == "running_var":
        value = rng.uniform(0.5, 2.0, shape)
    else:
        value = rng.normal(0.0, 0.05, shape)
    return value.astype(np.float32)


def state_dict(
    spec: Iterable[tuple[str, tuple[int, ...]]], seed: int, *, placeholders: Iterable[str] = ()
) -> dict[str, np.ndarray]:
    """``{key: array}`` for ``(key, shape)`` pairs; keys in ``placeholders`` get zero-stride zeros.

    ``num_batches_tracked`` entries are int64 zeros, as in a PyTorch state dict. Placeholders
    stand for entries a converter must skip (torchvision's VGG classifier: 120M values) with the
    real name and shape but no memory.
    """
    skip = set(placeholders)
    out = {}
    for key, shape in spec:
        shape = tuple(int(s) for s in shape)
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros(shape, np.int64)
        elif key in skip:
            out[key] = np.broadcast_to(np.float32(0.0), shape)
        else:
            out[key] = draw(key, shape, seed)
    return out


def images(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float32 NHWC images, uniform in [0, 1)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def digest(arrays: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> str:
    """SHA-256 over the keys, shapes, dtypes and bytes of ``arrays`` (sorted by key)."""
    h = hashlib.sha256()
    skip = set(skip)
    for key in sorted(arrays):
        if key in skip:
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode_spec(spec: Iterable[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """A ``(key, shape)`` list as a 0-d unicode array (JSON) for an ``.npz`` (no pickle)."""
    return np.array(json.dumps([[k, [int(s) for s in shape]] for k, shape in spec]))


def decode_spec(array: np.ndarray) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(shape)) for k, shape in json.loads(str(array))]


def load_golden(name: str) -> dict[str, np.ndarray]:
    """The arrays of ``tests/golden/<name>.npz``."""
    with np.load(GOLDEN_DIR / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}

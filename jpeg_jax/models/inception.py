"""The "FID Inception" network (InceptionV3 of the TF FID graph, as pytorch-fid ports it) in Flax.

Architecture of pytorch-fid's ``fid_inception_v3()`` (torchvision's ``Inception3`` with the
``FIDInceptionA/C/E_1/E_2`` blocks): every BatchNorm has eps 1e-3 and runs in inference mode on its
stored statistics; the branch average pools of the A, C and first E blocks ignore the zero padding
(TF's ``count_include_pad=False``); the last E block pools its branch with a max pool. The output is
the 2048-d "pool3" feature (global average of ``Mixed_7c``).

Layer names follow torchvision's module names (``Mixed_5b/branch1x1/conv``), so pytorch-fid's
state dict converts key by key (see :mod:`jpeg_jax.models.convert_inception`). Weights are never
downloaded: :func:`load_variables` reads a ``.npz`` the converter wrote.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

FEATURE_DIM = 2048
INPUT_SIZE = 299
PYTORCH_FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
WEIGHTS_HELP = (
    "FID/KID need the FID Inception weights of pytorch-fid, converted once to jpeg_jax's format. "
    f"Download {PYTORCH_FID_WEIGHTS_URL} and run `python -m jpeg_jax.models.convert_inception "
    "pt_inception-2015-12-05-6726825d.pth fid_inception.npz` (reading the .pth needs PyTorch), "
    "then pass the path of fid_inception.npz."
)

_HIGHEST = jax.lax.Precision.HIGHEST


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of ``F.interpolate(mode="bilinear", align_corners=False)`` on one axis.

    PyTorch samples at ``(dst + 0.5) * in / out - 0.5``, clamps negative positions to 0 and uses the
    last pixel for both neighbours at the far edge; there is no anti-aliasing when shrinking.
    """
    # A float32 scale and source positions rounded to float32 reproduce PyTorch's CPU weights
    # bit for bit (checked in tests/test_inception.py); exact float64 ones differ by ~1e-5.
    scale = np.float64(np.float32(in_size / out_size))
    src = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    lower = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    frac = src - lower.astype(np.float32)
    weights = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, lower), np.float32(1.0) - frac)
    np.add.at(weights, (rows, upper), frac)
    return weights


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize like ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``.

    This is the resize pytorch-fid's InceptionV3 applies before the network (no anti-aliasing,
    unlike ``jax.image.resize``'s default when shrinking).

    Args:
      images: float (N, H, W, C), any range.
      size: output (height, width).

    Returns:
      float32 (N, size[0], size[1], C).
    """
    rows = jnp.asarray(_bilinear_matrix(images.shape[1], size[0]))
    cols = jnp.asarray(_bilinear_matrix(images.shape[2], size[1]))
    out = jnp.einsum("oh,nhwc->nowc", rows, images.astype(jnp.float32), precision=_HIGHEST)
    return jnp.einsum("pw,nowc->nopc", cols, out, precision=_HIGHEST)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool whose border averages ignore the padding (TF's FID graph)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class BasicConv(nn.Module):
    """Convolution without bias, inference-mode BatchNorm (eps 1e-3), ReLU (torchvision's
    ``BasicConv2d``)."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad_h, pad_w = self.padding
        x = nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


class InceptionA(nn.Module):
    """35x35 block with a 5x5 branch (``FIDInceptionA``: padding-free average pool)."""

    pool_features: int
    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b1 = conv(64, name="branch1x1")(x)
        b5 = conv(48, name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``)."""

    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        bd = conv(64, name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 branches (``FIDInceptionC``: padding-free average pool)."""

    channels_7x7: int
    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        c7 = self.channels_7x7
        row, col = (
            dict(kernel_size=(1, 7), padding=(0, 3)),
            dict(kernel_size=(7, 1), padding=(3, 0)),
        )
        b1 = conv(192, name="branch1x1")(x)
        b7 = conv(c7, name="branch7x7_1")(x)
        b7 = conv(c7, **row, name="branch7x7_2")(b7)
        b7 = conv(192, **col, name="branch7x7_3")(b7)
        bd = conv(c7, name="branch7x7dbl_1")(x)
        bd = conv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = conv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = conv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = conv(192, **row, name="branch7x7dbl_5")(bd)
        bp = conv(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``)."""

    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(192, name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
        b7 = conv(192, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches.

    ``max_pool=False`` is ``FIDInceptionE_1`` (padding-free average pool), ``max_pool=True`` is
    ``FIDInceptionE_2`` (3x3 stride-1 max pool, as in the TF FID graph).
    """

    max_pool: bool = False
    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        row, col = (
            dict(kernel_size=(1, 3), padding=(0, 1)),
            dict(kernel_size=(3, 1), padding=(1, 0)),
        )
        b1 = conv(320, name="branch1x1")(x)
        b3 = conv(384, name="branch3x3_1")(x)
        b3 = [conv(384, **row, name="branch3x3_2a")(b3), conv(384, **col, name="branch3x3_2b")(b3)]
        bd = conv(448, name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = [
            conv(384, **row, name="branch3x3dbl_3a")(bd),
            conv(384, **col, name="branch3x3dbl_3b")(bd),
        ]
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        bp = conv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """InceptionV3 up to pool3, as pytorch-fid's ``InceptionV3(output_blocks=[3])``.

    Attributes:
      resize_input: resize to 299x299 first (:func:`resize_bilinear`), as pytorch-fid does.
      normalize_input: map [0, 1] to [-1, 1] (``2x - 1``) before the network.
      precision: matmul/conv precision; HIGHEST keeps GPUs off TF32 so features match PyTorch's.
    """

    resize_input: bool = True
    normalize_input: bool = True
    precision: Any = _HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Pool3 features.

        Args:
          images: float (N, H, W, 3) RGB in [0, 1]; H, W >= 75 when ``resize_input`` is off.

        Returns:
          float32 (N, 2048).
        """
        x = images.astype(jnp.float32)
        if self.resize_input:
            x = resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
        if self.normalize_input:
            x = 2.0 * x - 1.0
        conv = functools.partial(BasicConv, precision=self.precision)
        x = conv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
        x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = conv(80, name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        p = self.precision
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, precision=p, name=name)(x)
        x = InceptionB(precision=p, name="Mixed_6a")(x)
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, precision=p, name=name)(x)
        x = InceptionD(precision=p, name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, precision=p, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, precision=p, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def variable_shapes() -> dict[str, tuple[int, ...]]:
    """Flat ``"collection/module/.../leaf"`` -> shape, for every variable of the network."""
    abstract = jax.eval_shape(
        FIDInceptionV3(resize_input=False).init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32),
    )
    flat = traverse_util.flatten_dict(abstract, sep="/")
    return {key: tuple(value.shape) for key, value in flat.items()}


def validate_variables(flat: Mapping[str, Any], source: str = "the weights") -> None:
    """Raise ``ValueError`` unless ``flat`` has exactly the keys and shapes of the network."""
    expected = variable_shapes()
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    wrong = sorted(
        f"{key}: {tuple(np.shape(flat[key]))} != {shape}"
        for key, shape in expected.items()
        if key in flat and tuple(np.shape(flat[key])) != shape
    )
    if missing or unexpected or wrong:
        problems = [
            f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if items
        ]
        raise ValueError(
            f"{source}: not the FID Inception network's variables; "
            + "; ".join(problems)
            + ". "
            + WEIGHTS_HELP
        )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path!r} is not a jpeg_jax .npz weights file ({error}). {WEIGHTS_HELP}"
        ) from error


def load_variables(path: str | os.PathLike) -> dict[str, Any]:
    """Read FID Inception weights written by :mod:`jpeg_jax.models.convert_inception`.

    Args:
      path: a ``.npz`` of float32 arrays keyed ``"params/Mixed_5b/branch1x1/conv/kernel"``,
        ``"batch_stats/.../bn/mean"`` and so on (Flax layout: HWIO kernels).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` for ``FIDInceptionV3().apply``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not a ``.npz``, or keys/shapes differ from the network's.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No FID Inception weights at {path!r}. {WEIGHTS_HELP}")
    if path.endswith((".pth", ".pt")):
        raise ValueError(f"{path!r} is a PyTorch file; convert it first. {WEIGHTS_HELP}")
    flat = _read_npz(path)
    validate_variables(flat, source=repr(path))
    flat = {key: jnp.asarray(value, jnp.float32) for key, value in flat.items()}
    return traverse_util.unflatten_dict(flat, sep="/")

"""VGG19 convolutional feature extractor (no classifier) for the perceptual loss.

The layers and their order follow torchvision's ``vgg19().features`` (configuration "E" of
Simonyan & Zisserman), so the public ImageNet weights ``vgg19-dcbb9e9d.pth`` can be converted
with :func:`convert_torchvision_vgg19` (or ``python -m jpeg_jax.models.vgg IN.pth OUT.npz``) and
loaded with :func:`load_vgg19`. Nothing here downloads weights: the user supplies the file.

Layer names are BasicSR's (``conv1_1`` ... ``conv5_4``); torchvision's ``features.{idx}`` index
of each conv is in :data:`TORCHVISION_INDEX`. The module returns *pre-activation* conv outputs,
as BasicSR's ``VGGFeatureExtractor`` does for a ``convX_Y`` layer name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jpeg_jax import fileio
from jpeg_jax.models.torch_io import load_state_dict, to_numpy

# (name, in_channels, out_channels) of every 3x3 conv, in order; a 2x2 max-pool follows the last
# conv of each of the five blocks.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _layer_table() -> tuple[tuple[str, int, int, int], ...]:
    """(name, torchvision features index, in channels, out channels) of each conv."""
    rows, index, channels = [], 0, 3
    for block, (width, repeats) in enumerate(_BLOCKS, start=1):
        for conv in range(1, repeats + 1):
            rows.append((f"conv{block}_{conv}", index, channels, width))
            channels = width
            index += 2  # conv, ReLU
        index += 1  # max-pool
    return tuple(rows)


CONV_LAYERS = _layer_table()
LAYER_NAMES: tuple[str, ...] = tuple(row[0] for row in CONV_LAYERS)
TORCHVISION_INDEX: dict[str, int] = {row[0]: row[1] for row in CONV_LAYERS}
PARAM_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    name: {"kernel": (3, 3, cin, cout), "bias": (cout,)} for name, _, cin, cout in CONV_LAYERS
}

# torchvision / BasicSR ImageNet normalisation of RGB in [0, 1].
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class VGG19Features(nn.Module):
    """VGG19 conv stack returning pre-activation features of every conv up to ``last_layer``.

    Attributes:
        last_layer: deepest layer computed (e.g. ``"conv5_4"``); later layers are skipped.
        use_input_norm: subtract the ImageNet mean and divide by its std first (inputs in [0, 1]).
        dtype: computation dtype.
    """

    last_layer: str = "conv5_4"
    use_input_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """Features of ``images`` (B, H, W, 3) RGB in [0, 1].

        Returns:
            A dict ``{"conv1_1": (B, H, W, 64), ..., last_layer: ...}`` of conv outputs before
            their ReLU. Max-pools (2x2, stride 2, floor) halve H and W after each block.
        """
        if self.last_layer not in TORCHVISION_INDEX:
            raise ValueError(f"unknown VGG19 layer {self.last_layer!r}; one of {LAYER_NAMES}")
        x = images.astype(self.dtype)
        if self.use_input_norm:
            x = (x - IMAGENET_MEAN) / IMAGENET_STD
        features = {}
        for name, _, _, cout in CONV_LAYERS:
            block, conv = (int(v) for v in name[4:].split("_"))
            if conv == 1 and block > 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            x = nn.Conv(cout, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
            features[name] = x
            if name == self.last_layer:
                break
            x = nn.relu(x)
        return features


def convert_torchvision_vgg19(
    state_dict: Mapping[str, Any] | str | os.PathLike,
) -> dict[str, dict[str, np.ndarray]]:
    """Flax params of :class:`VGG19Features` from torchvision's VGG19 weights.

    Args:
        state_dict: torchvision ``vgg19().state_dict()`` (values torch tensors or NumPy arrays;
            ``classifier.*`` keys are ignored), or the path of such a ``.pth`` file (needs torch).

    Returns:
        ``{"conv1_1": {"kernel": (3, 3, Cin, Cout) float32, "bias": (Cout,)}, ...}``: conv
        weights moved from torch's OIHW to Flax's HWIO layout.

    Raises:
        ValueError: a ``features.{idx}`` conv key is missing or has the wrong shape.
    """
    if isinstance(state_dict, str | os.PathLike):
        state_dict = load_state_dict(
            state_dict,
            missing=f"VGG19 torchvision weights not found: {os.fspath(state_dict)!r}",
        )
    params = {}
    for name, index, cin, cout in CONV_LAYERS:
        weight = _conv_array(state_dict, f"features.{index}.weight", (cout, cin, 3, 3))
        bias = _conv_array(state_dict, f"features.{index}.bias", (cout,))
        params[name] = {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), "bias": bias}
    return params


def _conv_array(state_dict: Mapping[str, Any], key: str, shape: Sequence[int]) -> np.ndarray:
    if key not in state_dict:
        raise ValueError(f"not a torchvision VGG19 state_dict: key {key!r} is missing")
    value = to_numpy(state_dict[key])
    if value.shape != tuple(shape):
        raise ValueError(f"{key}: shape {value.shape}, expected {tuple(shape)} (VGG19 'E')")
    return value


def save_vgg19(params: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike) -> None:
    """Write params (as returned by :func:`convert_torchvision_vgg19`) to an ``.npz`` file at
    exactly ``path``, atomically (:func:`jpeg_jax.fileio.atomic_write`)."""
    flat = {
        f"{name}/{leaf}": np.asarray(params[name][leaf], np.float32)
        for name in LAYER_NAMES
        for leaf in ("kernel", "bias")
    }
    with fileio.atomic_write(path, "wb") as f:
        np.savez(f, **flat)


def load_vgg19(path: str | os.PathLike) -> dict[str, dict[str, jnp.ndarray]]:
    """Load VGG19 params converted by ``python -m jpeg_jax.models.vgg IN.pth OUT.npz``.

    Args:
        path: the ``.npz`` file (keys ``conv1_1/kernel``, ``conv1_1/bias``, ...).

    Returns:
        Params for ``VGG19Features().apply({"params": params}, images)``.

    Raises:
        FileNotFoundError: ``path`` does not exist (says how to make it).
        ValueError: a key is missing or unexpected, or a shape is wrong.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG19 weights file not found: {os.fspath(path)!r}. Nothing is downloaded: get "
            "torchvision's vgg19-dcbb9e9d.pth and convert it with "
            "`python -m jpeg_jax.models.vgg vgg19-dcbb9e9d.pth vgg19.npz`."
        )
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    expected = {
        f"{n}/{leaf}": s for n, shapes in PARAM_SHAPES.items() for leaf, s in shapes.items()
    }
    missing, extra = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected)
    if missing or extra:
        raise ValueError(
            f"{os.fspath(path)!r} is not a VGG19 .npz: missing {missing}, extra {extra}"
        )
    params: dict[str, dict[str, jnp.ndarray]] = {name: {} for name in LAYER_NAMES}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(
                f"{os.fspath(path)!r}: {key} has shape {arrays[key].shape}, not {shape}"
            )
        name, leaf = key.split("/")
        params[name][leaf] = jnp.asarray(arrays[key], jnp.float32)
    return params


def main(argv: Sequence[str]) -> int:
    """``python -m jpeg_jax.models.vgg IN.pth OUT.npz``: convert torchvision VGG19 weights."""
    if len(argv) != 2:
        print("usage: python -m jpeg_jax.models.vgg vgg19-dcbb9e9d.pth OUT.npz", file=sys.stderr)
        return 2
    source, target = argv
    try:
        params = convert_torchvision_vgg19(source)
    except (OSError, ImportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_vgg19(params, target)
    print(f"wrote {target} ({len(LAYER_NAMES)} conv layers)")
    return 0


if __name__ == "__main__":
    from jpeg_jax.platform import configure_xla

    configure_xla()
    sys.exit(main(sys.argv[1:]))

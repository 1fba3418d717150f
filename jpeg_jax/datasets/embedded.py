"""The embedded default dataset: colour photographs bundled with scikit-image.

Needs no download: every photo below ships inside the scikit-image wheel (photos that need
``pooch`` downloads, e.g. ``skimage.data.lily`` or ``eagle``, are left out; greyscale and synthetic
images too). Sizes (H x W): astronaut 512x512, chelsea 300x451, coffee 400x600, rocket 427x640,
motorcycle 500x741 (left view of ``stereo_motorcycle``), hubble_deep_field 872x1000,
immunohistochemistry 512x512, retina 1411x1411.

Split: ``"test"`` holds out ``astronaut`` (the demo figure's photo, never trained on); ``"train"``
is the other seven; ``"all"`` is all eight.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
HELD_OUT = ("astronaut",)
SPLITS = {
    "train": tuple(name for name in PHOTOS if name not in HELD_OUT),
    "test": HELD_OUT,
    "all": PHOTOS,
}


def load_photo(name: str) -> np.ndarray:
    """One embedded photo as uint8 (H, W, 3) RGB, values 0..255."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown embedded photo {name!r}; choose from {PHOTOS}")
    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def split_names(split: str) -> tuple[str, ...]:
    """Photo names of a split: ``"train"``, ``"test"`` (held out) or ``"all"``, in fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown embedded split {split!r}; choose from {tuple(SPLITS)}")
    return SPLITS[split]


def load_split(split: str) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 (H, W, 3))`` pairs of a split, in fixed order."""
    return [(name, load_photo(name)) for name in split_names(split)]


def encoded_split(split: str) -> tuple[list[str], list[bytes]]:
    """Names and lossless BMP bytes of a split, for tf.data (BMP decodes at memcpy speed)."""
    names, blobs = [], []
    for name, image in load_split(split):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="BMP")
        names.append(name)
        blobs.append(buffer.getvalue())
    return names, blobs

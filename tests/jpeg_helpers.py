"""Shared fixtures for the JPEG tests: scikit-image photos encoded by Pillow (real libjpeg)."""

import io
import os
import tempfile

import jpeglib
import numpy as np
import skimage.data
from PIL import Image

from jpeg_jax.jpeg import quality_to_qtables  # equal to Pillow's for every quality (tested)

PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}

# (photo, crop) pairs covering whole-MCU, odd and thin sizes.
CROPS = [
    ("astronaut", (slice(100, 228), slice(150, 278))),  # 128 x 128
    ("coffee", (slice(3, 40), slice(5, 58))),  # 37 x 53
    ("chelsea", (slice(0, 130), slice(100, 170))),  # 130 x 70
    ("rocket", (slice(200, 217), slice(0, 300))),  # 17 x 300
]


def photo(name: str, crop=None) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    return np.ascontiguousarray(image if crop is None else image[crop])


def libjpeg_jpeg(image: np.ndarray, factors, quality=None, qtables=None) -> bytes:
    """A baseline file written by libjpeg-turbo 2.1 (jpeglib) with luma sampling ``factors``
    ``(h, v)`` over 1x1 chroma: what Pillow cannot write (4:4:0 is ``(1, 2)``). ``quality``
    (libjpeg's scaled tables) or ``qtables`` ``(2, 8, 8)``."""
    h, v = factors
    previous = jpeglib.version.get() or "6b"
    jpeglib.version.set("turbo210")
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "image.jpg")
            im = jpeglib.from_spatial(np.ascontiguousarray(image, np.uint8))
            im.samp_factor = np.array([[v, h], [1, 1], [1, 1]])  # jpeglib: (vertical, horizontal)
            if qtables is None:  # Pillow's (baseline) tables; jpeglib's own exceed 255
                qtables = quality_to_qtables(quality)
            im.write_spatial(path, qt=np.asarray(qtables, np.uint16))
            with open(path, "rb") as f:
                return f.read()
    finally:
        jpeglib.version.set(previous)


def pillow_jpeg(image: np.ndarray, quality: int, subsampling: str, **kwargs) -> bytes:
    """Pillow's JPEG file; for 4:4:0, which Pillow cannot write, libjpeg-turbo's (no kwargs)."""
    if subsampling == "4:4:0":
        assert not kwargs, kwargs
        return libjpeg_jpeg(image, (1, 2), quality=quality)
    buf = io.BytesIO()
    if subsampling == "gray":
        Image.fromarray(image[..., 0] if image.ndim == 3 else image).save(
            buf, "JPEG", quality=quality, **kwargs
        )
    else:
        Image.fromarray(image).save(
            buf, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling], **kwargs
        )
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

"""Shared fixtures for the JPEG tests: scikit-image photos encoded by Pillow (real libjpeg)."""

import io

import numpy as np
import skimage.data
from PIL import Image

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


def pillow_jpeg(image: np.ndarray, quality: int, subsampling: str, **kwargs) -> bytes:
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

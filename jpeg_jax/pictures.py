"""8-bit pictures of restorations as a viewer shows them: orientation, uncertainty map, writing.

Restorations are float ``(H, W, 3)`` in [0, 1] in the JPEG's *stored* orientation; a viewer
shows the file turned upright by its EXIF orientation tag (1..8). :func:`to_picture` makes the
upright 8-bit image, :func:`std_picture` the grey uncertainty map (``255 * std ** (1/4)``),
:func:`upright_box` / :func:`stored_box` carry rectangles between the two orientations, and
:func:`write_pictures` saves outputs so that none is ever half-written. Used by the decoder
CLI (:mod:`jpeg_jax.decode`) and the explorer page (:mod:`jpeg_jax.explore`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jpeg_jax import fileio

FORMATS = {"png": "PNG", "tiff": "TIFF", "webp": "WEBP"}

# PIL transposes for EXIF orientations 2..8 (as PIL.ImageOps.exif_transpose).
ORIENTATION_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def to_picture(image, orientation: int, gray: bool) -> Image.Image:
    """float ``(H, W, 3)`` in [0, 1] -> an upright 8-bit PIL image (mode L when ``gray``)."""
    u8 = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = Image.fromarray(u8[..., 0] if gray else u8)
    if orientation in ORIENTATION_TRANSPOSE:
        picture = picture.transpose(getattr(Image.Transpose, ORIENTATION_TRANSPOSE[orientation]))
    return picture


def rooted_level(value, root: int = 4, *, upper: float | None = None) -> np.ndarray:
    """The displayed level of a non-negative map: ``clip(mean_rgb(value), 0, upper) ** (1/root)``.

    The one root display of the package: the decoder's and explorer's uncertainty maps
    (:func:`std_level`) and the figures' colour-bar maps (:mod:`jpeg_jax.visualize`). A root
    shows small differences (the appendix's Figures 6, 8 and 9).

    Args:
      value: ``(H, W)`` or ``(H, W, C)`` (averaged over C), any units.
      root: 4 for a std or an absolute difference, 8 for a variance.
      upper: clip above (None: no upper clip).

    Returns:
      ``(H, W)`` float64 levels.
    """
    value = np.asarray(value, np.float64)
    if value.ndim == 3:
        value = value.mean(axis=-1)
    return np.clip(value, 0.0, upper) ** (1.0 / root)


def std_level(std) -> np.ndarray:
    """Per-pixel std ``(H, W, 3)`` in [0, 1] -> the displayed level ``mean_rgb(std) ** (1/4)``.

    In [0, 1]: 0 where all samples agree; 64/255 is a spread of about one grey level of 255,
    128/255 about 16, 1 the whole range (the fourth root shows small differences).
    """
    return rooted_level(std, 4, upper=1.0)


def std_picture(std, orientation: int) -> Image.Image:
    """Per-pixel std ``(H, W, 3)`` in [0, 1] -> upright grey map of ``255 * std ** (1/4)``."""
    level = std_level(std)
    return to_picture(np.repeat(level[..., None], 3, axis=-1), orientation, gray=True)


def _maps(orientation: int, size: tuple[int, int]):
    """(stored -> upright, upright -> stored) maps of edge coordinates ``(row, col)``; ``size``
    is the stored ``(H, W)``."""
    h, w = size
    forward = {
        1: lambda r, c: (r, c),
        2: lambda r, c: (r, w - c),
        3: lambda r, c: (h - r, w - c),
        4: lambda r, c: (h - r, c),
        5: lambda r, c: (c, r),
        6: lambda r, c: (c, h - r),
        7: lambda r, c: (w - c, h - r),
        8: lambda r, c: (w - c, r),
    }
    backward = {
        1: lambda u, v: (u, v),
        2: lambda u, v: (u, w - v),
        3: lambda u, v: (h - u, w - v),
        4: lambda u, v: (h - u, v),
        5: lambda u, v: (v, u),
        6: lambda u, v: (h - v, u),
        7: lambda u, v: (h - v, w - u),
        8: lambda u, v: (v, w - u),
    }
    key = orientation if orientation in forward else 1
    return forward[key], backward[key]


def _map_box(box, point_map) -> tuple[int, int, int, int]:
    (r0, c0), (r1, c1) = point_map(box[0], box[1]), point_map(box[2], box[3])
    return min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)


def upright_box(box, orientation: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A stored-image rectangle ``(top, left, bottom, right)`` as seen upright.

    Args:
      box: half-open pixel rectangle of the stored image.
      orientation: EXIF orientation 1..8 (others: 1).
      size: the stored image's ``(H, W)``.
    """
    return _map_box(box, _maps(orientation, size)[0])


def stored_box(box, orientation: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The inverse of :func:`upright_box`: an upright rectangle in stored pixels (``size`` is
    still the *stored* ``(H, W)``)."""
    return _map_box(box, _maps(orientation, size)[1])


def encode_picture(picture: Image.Image, fmt: str = "png", icc: bytes | None = None) -> bytes:
    """A picture's file bytes, lossless in every format of :data:`FORMATS`."""
    buf = io.BytesIO()
    _save(picture, buf, fmt, icc)
    return buf.getvalue()


def _save(picture, target, fmt, icc):
    options = {
        "WEBP": {"lossless": True, "quality": 100, "exact": True},
        "TIFF": {"compression": "tiff_adobe_deflate"},
    }.get(FORMATS[fmt], {})
    if icc and picture.mode != "L":
        options["icc_profile"] = icc
    picture.save(target, format=FORMATS[fmt], **options)


def write_pictures(outputs: dict[str, object], fmt: str, icc: bytes | None) -> None:
    """Saves ``{path: PIL image or bytes}`` with :func:`jpeg_jax.fileio.write_files` (all
    staged, then renamed: an interruption never leaves a half-written output); images are
    saved as ``fmt`` with ``icc`` (as :func:`encode_picture`)."""

    def writer(picture):
        return lambda f: _save(picture, f, fmt, icc)

    fileio.write_files(
        {
            path: content if isinstance(content, bytes) else writer(content)
            for path, content in outputs.items()
        }
    )

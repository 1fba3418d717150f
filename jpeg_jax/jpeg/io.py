"""Reading JPEG files: exact quantized coefficients (jpeglib), tables, and libjpeg's decode;
writing them with libjpeg through Pillow (:func:`pillow_encode`; 4:4:0 through jpeglib).

Everything this package cannot represent faithfully is refused up front with :class:`JpegError`,
whose message names the problem: not a JPEG, empty or truncated data, CMYK/YCCK or RGB-coded
files, 12-bit precision, arithmetic coding, lossless or hierarchical JPEG, chroma sampling other
than 4:4:4, 4:2:2, 4:2:0 and 4:4:0.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

import jpeglib
import numpy as np
from PIL import Image

from jpeg_jax.jpeg.codec import SUBSAMPLING, Coefficients
from jpeg_jax.jpeg.tables import quality_to_qtables

PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}  # Pillow's ``subsampling=`` codes


class JpegError(ValueError):
    """A file that is not a JPEG this package can read; the message says why."""


class JpegInfo(NamedTuple):
    """Header facts read without decoding (cheap: use it to refuse huge images early)."""

    height: int
    width: int
    subsampling: str
    progressive: bool


@dataclass(frozen=True)
class JpegImage:
    """A decoded JPEG file.

    Attributes:
      pixels: libjpeg's own decode (Pillow), uint8 ``(H, W, 3)``, stored orientation.
      qtables: int32 ``(2, 8, 8)`` luma and chroma tables, natural order (a grayscale file's
        single table is repeated).
      subsampling: "4:4:4", "4:2:2", "4:2:0", "4:4:0" or "gray".
      coefficients: the file's quantized coefficients, int32, layout of ``jpeg.encode``.
      orientation: EXIF orientation tag (1..8; 1 when absent). Pixels are not rotated.
      icc_profile: the embedded ICC profile, if any.
    """

    pixels: np.ndarray
    qtables: np.ndarray
    subsampling: str
    coefficients: Coefficients
    orientation: int = 1
    icc_profile: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]


_SUPPORTED_SOF = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
_UNSUPPORTED_SOF = {
    0xC3: "lossless JPEG",
    0xC5: "hierarchical JPEG",
    0xC6: "hierarchical JPEG",
    0xC7: "hierarchical lossless JPEG",
    0xC9: "arithmetic-coded JPEG",
    0xCA: "arithmetic-coded progressive JPEG",
    0xCB: "arithmetic-coded lossless JPEG",
    0xCD: "arithmetic-coded hierarchical JPEG",
    0xCE: "arithmetic-coded hierarchical JPEG",
    0xCF: "arithmetic-coded hierarchical JPEG",
}
_RATIOS = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0"}


def _load_bytes(source: str | os.PathLike | bytes) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise JpegError(f"{os.fspath(source)}: no such file") from None
        except IsADirectoryError:
            raise JpegError(f"{os.fspath(source)}: is a directory, not a file") from None
        except OSError as e:
            raise JpegError(f"{os.fspath(source)}: cannot read ({e.strerror})") from None
    if not data:
        raise JpegError("empty file")
    return data


def _subsampling(components: list[tuple[int, int, int]]) -> str:
    if len(components) == 1:
        return "gray"
    (_, yh, yv), (_, cbh, cbv), (_, crh, crv) = components
    if (cbh, cbv) != (crh, crv) or yh % cbh or yv % cbv:
        raise JpegError(f"unsupported chroma sampling factors {components}")
    ratio = (yh // cbh, yv // cbv)
    if ratio not in _RATIOS:
        raise JpegError(f"unsupported chroma subsampling (ratio {ratio[0]}x{ratio[1]})")
    return _RATIOS[ratio]


def probe_jpeg(source: str | os.PathLike | bytes) -> JpegInfo:
    """Parse the markers up to the first scan and check this package can decode the file.

    Raises:
      JpegError: naming the problem (see the module docstring).
    """
    data = _load_bytes(source)
    if data[:2] != b"\xff\xd8":
        raise JpegError("not a JPEG file (no SOI marker)")
    pos, info, adobe_transform, jfif, rgb_ids = 2, None, None, False, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise JpegError(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos + 4 : pos + 2 + length]
        if len(segment) < length - 2:
            raise JpegError("truncated JPEG header")
        if marker in _UNSUPPORTED_SOF:
            raise JpegError(f"unsupported: {_UNSUPPORTED_SOF[marker]}")
        if marker in _SUPPORTED_SOF:
            precision, height, width, count = struct.unpack(">BHHB", segment[:6])
            if precision != 8:
                raise JpegError(f"unsupported: {precision}-bit samples (only 8-bit JPEG)")
            if count not in (1, 3):
                kind = "CMYK/YCCK" if count == 4 else f"{count}-component"
                raise JpegError(f"unsupported: {kind} JPEG (only grayscale and YCbCr)")
            comps = [
                (segment[6 + 3 * i], segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15)
                for i in range(count)
            ]
            rgb_ids = count == 3 and [c[0] for c in comps] == [ord("R"), ord("G"), ord("B")]
            if height == 0 or width == 0:
                raise JpegError("unsupported: image height defined by a DNL marker")
            info = JpegInfo(height, width, _subsampling(comps), marker == 0xC2)
        if marker == 0xE0 and segment[:5] == b"JFIF\0" and len(segment) >= 14:
            jfif = True
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe_transform = segment[11]
        if marker == 0xDA:  # start of scan: the header is complete
            break
        pos += 2 + length
    if info is None:
        raise JpegError("truncated or corrupt JPEG: no frame header before the data")
    if info.subsampling != "gray":
        _check_ycbcr(jfif, adobe_transform, rgb_ids)
    return info


def _check_ycbcr(jfif: bool, adobe_transform: int | None, rgb_ids: bool) -> None:
    """Refuses a 3-component file that libjpeg-turbo decodes as RGB (no colour transform).

    libjpeg-turbo's rule (``jdapimin.c``, ``default_decompress_parms``): a JFIF marker means
    YCbCr; else an Adobe marker decides (transform 0: RGB, any other: YCbCr); else component IDs
    'R', 'G', 'B' mean RGB; anything else is YCbCr.
    """
    if jfif:
        return
    if adobe_transform is not None:
        if adobe_transform == 0:
            raise JpegError("unsupported: RGB-coded JPEG (Adobe transform 0, no JFIF marker)")
        return
    if rgb_ids:
        raise JpegError(
            "unsupported: RGB-coded JPEG (component IDs 'R', 'G', 'B', no JFIF or Adobe marker)"
        )


def _pillow_decode(data: bytes) -> tuple[np.ndarray, int, bytes | None]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            # "MPO": a JPEG with a Multi-Picture Format segment (camera previews, the HDR gain
            # maps of phones); the photo is its first, primary image, decoded here (frame 0).
            if im.format not in ("JPEG", "MPO"):
                raise JpegError(f"not a JPEG file (Pillow reads it as {im.format})")
            im.load()
            orientation = int(im.getexif().get(0x0112, 1))
            icc = im.info.get("icc_profile")
            pixels = np.asarray(im.convert("RGB"))
    except JpegError:
        raise
    except Image.DecompressionBombError as e:  # above 2 x PIL.Image.MAX_IMAGE_PIXELS
        raise JpegError(f"too large for Pillow's decoder ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise JpegError(f"corrupt or truncated JPEG ({e})") from None
    return pixels, orientation if 1 <= orientation <= 8 else 1, icc


def _read_coefficients(data: bytes, subsampling: str):
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        try:
            dct = jpeglib.read_dct(f.name)
            arrays = [np.asarray(dct.Y, np.int32)]
            if subsampling != "gray":
                arrays += [np.asarray(dct.Cb, np.int32), np.asarray(dct.Cr, np.int32)]
            tables = np.asarray(dct.qt, np.int32)
            numbers = list(np.asarray(dct.quant_tbl_no).reshape(-1))
        except Exception as e:  # jpeglib raises plain exceptions from libjpeg's messages
            raise JpegError(f"cannot read DCT coefficients ({e})") from None
    luma = tables[numbers[0]]
    if subsampling == "gray":
        return Coefficients(arrays[0]), np.stack([luma, luma])
    if not np.array_equal(tables[numbers[1]], tables[numbers[2]]):
        raise JpegError("unsupported: Cb and Cr use different quantization tables")
    return Coefficients(*arrays), np.stack([luma, tables[numbers[1]]])


def read_jpeg(source: str | os.PathLike | bytes) -> JpegImage:
    """Read a JPEG file or bytes: exact coefficients, tables, subsampling and libjpeg's decode.

    Baseline, extended and progressive files, restart markers and grayscale are supported. Of a
    multi-picture file (MPF: camera previews, phones' HDR gain maps) the primary image is read.

    Raises:
      JpegError: the file is missing, empty, truncated, not a JPEG, or of an unsupported kind;
        the message names the problem.
    """
    data = _load_bytes(source)
    info = probe_jpeg(data)
    pixels, orientation, icc = _pillow_decode(data)
    coefficients, qtables = _read_coefficients(data, info.subsampling)
    if pixels.shape[:2] != (info.height, info.width):
        raise JpegError(f"decoded size {pixels.shape[:2]} != header size")
    return JpegImage(pixels, qtables, info.subsampling, coefficients, orientation, icc)


def _libjpeg_encode_440(image: np.ndarray, qtables: np.ndarray) -> bytes:
    """A 4:4:0 baseline JPEG of a uint8 RGB image with explicit tables, by libjpeg-turbo 2.1
    (jpeglib; ``cjpeg -sample 1x2``'s coefficients)."""
    previous = jpeglib.version.get() or "6b"
    jpeglib.version.set("turbo210")
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "image.jpg")
            im = jpeglib.from_spatial(np.ascontiguousarray(image, np.uint8))
            im.samp_factor = np.array([[2, 1], [1, 1], [1, 1]])  # jpeglib's rows: (v, h)
            im.write_spatial(path, qt=np.asarray(qtables, np.uint16)[:2])
            with open(path, "rb") as f:
                return f.read()
    finally:
        jpeglib.version.set(previous)


def pillow_encode(
    image, *, quality: int | None = None, qtables=None, subsampling: str = "4:2:0"
) -> bytes:
    """libjpeg's baseline JPEG file (written by Pillow) of a uint8 ``(H, W, 3)`` RGB image.

    The Pillow-world encoder of the package (the tf.data twin is
    :func:`jpeg_jax.datasets.transforms.tf_encode_jpeg`, which writes the same bytes).

    Args:
      image: uint8 ``(H, W, 3)``; for ``"gray"`` its first channel is encoded.
      quality: IJG quality 1..100 (libjpeg's scaled standard tables); or
      qtables: int ``(2, 8, 8)`` luma and chroma tables in natural order, written as given.
      subsampling: ``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``, ``"4:4:0"`` (written by
        libjpeg-turbo through jpeglib, as Pillow cannot) or ``"gray"``.
    """
    image = np.asarray(image)
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"unsupported subsampling {subsampling!r}")
    if (quality is None) == (qtables is None):
        raise ValueError("give exactly one of quality and qtables")
    if subsampling == "4:4:0":  # Pillow writes 4:4:4, 4:2:2 and 4:2:0 only
        tables = quality_to_qtables(int(quality)) if qtables is None else qtables
        return _libjpeg_encode_440(image, np.asarray(tables))
    if qtables is None:
        options = {"quality": int(quality)}
    else:
        tables = [np.asarray(t).reshape(-1).tolist() for t in np.asarray(qtables)]
        options = {"qtables": tables[:1] if subsampling == "gray" else tables}
    buffer = io.BytesIO()
    if subsampling == "gray":
        Image.fromarray(image[..., 0]).save(buffer, "JPEG", **options)
    else:
        Image.fromarray(image).save(
            buffer, "JPEG", subsampling=PILLOW_SUBSAMPLING[subsampling], **options
        )
    return buffer.getvalue()

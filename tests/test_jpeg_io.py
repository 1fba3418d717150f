"""read_jpeg / probe_jpeg: supported kinds decode exactly, unsupported ones fail clearly."""

import io
import struct

import numpy as np
import pytest
from jpeg_helpers import photo, pillow_decode, pillow_jpeg
from PIL import Image

from jpeg_jax import jpeg


def _image():
    return photo("astronaut", (slice(0, 48), slice(0, 64)))


@pytest.mark.parametrize(
    "kwargs,subsampling",
    [
        ({}, "4:2:0"),
        ({"progressive": True}, "4:2:0"),
        ({"restart_marker_blocks": 1}, "4:2:0"),
        ({"optimize": True}, "4:4:4"),
    ],
)
def test_supported_files_read_exactly(kwargs, subsampling):
    data = pillow_jpeg(_image(), 30, subsampling, **kwargs)
    f = jpeg.read_jpeg(data)
    assert f.subsampling == subsampling and f.size == (48, 64)
    np.testing.assert_array_equal(f.pixels, pillow_decode(data))
    np.testing.assert_array_equal(f.qtables, jpeg.quality_to_qtables(30))
    decoded = jpeg.decode(f.coefficients, f.qtables, subsampling=subsampling, size=f.size)
    np.testing.assert_allclose(np.asarray(decoded) * 255, f.pixels, atol=1e-3)


def test_read_from_path_and_metadata(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(pillow_jpeg(_image(), 50, "4:2:2", exif=exif, icc_profile=b"fake-icc"))
    f = jpeg.read_jpeg(path)
    assert f.orientation == 6 and f.icc_profile == b"fake-icc" and f.subsampling == "4:2:2"
    assert jpeg.probe_jpeg(path) == jpeg.JpegInfo(48, 64, "4:2:2", False)


def test_grayscale():
    f = jpeg.read_jpeg(pillow_jpeg(_image(), 40, "gray"))
    assert f.subsampling == "gray" and f.pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(f.qtables[0], f.qtables[1])


def _replace_sof(data: bytes, marker: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[:i] + bytes([0xFF, marker]) + data[i + 2 :]


def _set_precision(data: bytes, bits: int) -> bytes:
    i = data.index(b"\xff\xc0") + 4
    return data[:i] + bytes([bits]) + data[i + 1 :]


def _bad_inputs():
    good = pillow_jpeg(_image(), 30, "4:2:0")
    cmyk = io.BytesIO()
    Image.fromarray(_image()).convert("CMYK").save(cmyk, "JPEG")
    png = io.BytesIO()
    Image.fromarray(_image()).save(png, "PNG")
    return {
        "empty": (b"", "empty"),
        "text": (b"hello, this is not an image\n", "not a JPEG"),
        "png": (png.getvalue(), "not a JPEG"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "header only": (good[:40], "truncated"),
        "cmyk": (cmyk.getvalue(), "CMYK"),
        "12-bit": (_set_precision(good, 12), "12-bit"),
        "arithmetic": (_replace_sof(good, 0xC9), "arithmetic"),
        "lossless": (_replace_sof(good, 0xC3), "lossless"),
    }


@pytest.mark.parametrize("kind", list(_bad_inputs()))
def test_unsupported_files_raise_one_clear_error(kind):
    data, words = _bad_inputs()[kind]
    with pytest.raises(jpeg.JpegError, match=words):
        jpeg.read_jpeg(data)


def test_missing_file(tmp_path):
    with pytest.raises(jpeg.JpegError, match="no such file"):
        jpeg.read_jpeg(tmp_path / "nope.jpg")


def test_probe_reads_huge_dimensions_without_decoding():
    data = bytearray(pillow_jpeg(_image(), 30, "4:2:0"))
    i = data.index(b"\xff\xc0") + 5
    data[i : i + 4] = struct.pack(">HH", 60000, 60000)
    assert jpeg.probe_jpeg(bytes(data))[:2] == (60000, 60000)

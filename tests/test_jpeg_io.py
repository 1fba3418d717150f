"""read_jpeg / probe_jpeg: supported kinds decode exactly, unsupported ones fail clearly."""

import io
import struct

import numpy as np
import pytest
from jpeg_helpers import libjpeg_jpeg, photo, pillow_decode, pillow_jpeg
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
        ({}, "4:4:0"),  # libjpeg-turbo's file (Pillow cannot write 4:4:0)
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


def test_multi_picture_file_reads_its_primary_image():
    """A JPEG with an MPF segment (camera previews, phones' HDR gain maps), which Pillow calls
    "MPO": the photo is its first image, as a viewer shows it."""
    primary, other = _image(), _image()[::-1, ::-1].copy()
    buf = io.BytesIO()
    Image.fromarray(primary).save(
        buf, "MPO", save_all=True, append_images=[Image.fromarray(other)], quality=30
    )
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.format == "MPO" and im.n_frames == 2
    f = jpeg.read_jpeg(buf.getvalue())
    alone = pillow_jpeg(primary, 30, "4:2:0")  # the same picture as a plain JPEG file
    np.testing.assert_array_equal(f.pixels, pillow_decode(alone))
    for a, b in zip(f.coefficients, jpeg.read_jpeg(alone).coefficients, strict=True):
        np.testing.assert_array_equal(a, b)
    assert jpeg.probe_jpeg(buf.getvalue()) == jpeg.JpegInfo(48, 64, "4:2:0", False)


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


@pytest.mark.parametrize(
    "factors,words",
    [((4, 1), "ratio 4x1"), ((1, 4), "ratio 1x4"), ((4, 2), "ratio 4x2"), ((3, 1), "ratio 3x1")],
)
def test_unusual_chroma_sampling_is_refused_by_name(factors, words):
    data = libjpeg_jpeg(_image(), factors, quality=30)
    assert pillow_decode(data).shape == (48, 64, 3)  # a valid file libjpeg decodes
    with pytest.raises(jpeg.JpegError, match=f"unsupported chroma subsampling \\({words}\\)"):
        jpeg.read_jpeg(data)


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


# ----------------------------------------------------------------------------- colour space
# libjpeg-turbo decides per file whether its three components are YCbCr or RGB: a JFIF marker
# means YCbCr; else an Adobe APP14 marker decides (transform 0: RGB, else YCbCr); else component
# IDs 'R', 'G', 'B' mean RGB. Files are made by Pillow (keep_rgb=True writes libjpeg's RGB
# JPEG: Adobe transform 0, IDs 'R', 'G', 'B', no JFIF) and by editing their markers.
_RGB_IDS, _YCC_IDS = b"RGB", b"\x01\x02\x03"


def _segments(data: bytes):
    """([(marker, segment bytes incl. marker)], entropy-coded rest) up to the first scan."""
    pos, out = 2, []
    while True:
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((marker, data[pos : pos + 2 + length]))
        if marker == 0xDA:
            return out, data[pos + 2 + length :]
        pos += 2 + length


def _rebuild(data: bytes, *, ids=None, jfif=None, adobe=None) -> bytes:
    """``data`` with its component IDs replaced, JFIF dropped/added, Adobe transform set/dropped.

    ``jfif`` / ``adobe``: None keeps what is there, False drops it, True / an int adds or sets it.
    """
    segments, rest = _segments(data)
    jfif_segment = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    out = []
    for marker, seg in segments:
        if (marker == 0xE0 and jfif is not None) or (marker == 0xEE and adobe is not None):
            continue
        if ids is not None and marker in (0xC0, 0xDA):
            seg = bytearray(seg)
            first, step = (10, 3) if marker == 0xC0 else (5, 2)
            for i in range(3):
                seg[first + step * i] = ids[i]
            seg = bytes(seg)
        out.append(seg)
    if adobe is not None and adobe is not False:
        out.insert(0, b"\xff\xee\x00\x0eAdobe" + struct.pack(">HHHB", 100, 0, 0, adobe))
    if jfif:
        out.insert(0, jfif_segment)
    return b"\xff\xd8" + b"".join(out) + rest


def _keep_rgb_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_image()).save(buf, "JPEG", quality=50, keep_rgb=True, subsampling=0)
    return buf.getvalue()


def test_pillow_keep_rgb_writes_an_rgb_coded_file():
    segments, _ = _segments(_keep_rgb_jpeg())
    markers = dict(segments)
    assert 0xE0 not in markers and markers[0xEE][4:9] == b"Adobe" and markers[0xEE][15] == 0
    assert markers[0xC0][10:19:3] == _RGB_IDS
    # libjpeg really decodes it without a colour transform: close to the RGB original, while
    # the same coefficients read as YCbCr would be far off.
    error = np.abs(pillow_decode(_keep_rgb_jpeg()).astype(int) - _image()).mean()
    assert error < 4


@pytest.mark.parametrize(
    "edit,words",
    [
        ({}, "Adobe transform 0"),  # Pillow's keep_rgb file as written
        ({"ids": _YCC_IDS}, "Adobe transform 0"),  # IDs 1, 2, 3 do not override Adobe
        ({"adobe": False}, "component IDs 'R', 'G', 'B'"),
    ],
)
def test_rgb_coded_files_raise_a_clear_error(edit, words):
    data = _rebuild(_keep_rgb_jpeg(), **edit)
    with pytest.raises(jpeg.JpegError, match=f"RGB-coded JPEG.*{words}"):
        jpeg.probe_jpeg(data)
    with pytest.raises(jpeg.JpegError, match="RGB-coded"):
        jpeg.read_jpeg(data)


def test_adobe_transform_0_on_a_ycbcr_file_without_jfif_is_refused():
    data = _rebuild(pillow_jpeg(_image(), 50, "4:2:0"), jfif=False, adobe=0)
    with pytest.raises(jpeg.JpegError, match="Adobe transform 0"):
        jpeg.read_jpeg(data)


@pytest.mark.parametrize(
    "edit",
    [
        {"adobe": 0},  # JFIF wins over Adobe transform 0
        {"ids": _RGB_IDS},  # and over 'R', 'G', 'B' IDs
        {"jfif": False, "adobe": 1},  # Adobe transform 1: YCbCr
        {"jfif": False, "adobe": 1, "ids": _RGB_IDS},  # Adobe wins over the IDs
        {"jfif": False},  # no marker, IDs 1, 2, 3
    ],
)
def test_files_libjpeg_decodes_as_ycbcr_are_read_exactly(edit):
    data = _rebuild(pillow_jpeg(_image(), 50, "4:2:0"), **edit)
    f = jpeg.read_jpeg(data)
    np.testing.assert_array_equal(f.pixels, pillow_decode(data))
    decoded = jpeg.decode(f.coefficients, f.qtables, subsampling=f.subsampling, size=f.size)
    np.testing.assert_array_equal(np.round(np.asarray(decoded, np.float64) * 255), f.pixels)


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0", "4:4:0", "gray"])
def test_pillow_encode_writes_what_pillow_writes(subsampling):
    image = _image()
    # By quality: the test helper's own Pillow call is the reference (for 4:4:0, which Pillow
    # cannot write, the helper's own call of libjpeg-turbo through jpeglib).
    by_quality = jpeg.pillow_encode(image, quality=20, subsampling=subsampling)
    assert by_quality == pillow_jpeg(image, 20, subsampling)
    # By tables: the file holds exactly the given tables (read back by jpeglib).
    tables = np.stack([np.full((8, 8), 7), np.arange(1, 65).reshape(8, 8)]).astype(np.int32)
    read = jpeg.read_jpeg(jpeg.pillow_encode(image, qtables=tables, subsampling=subsampling))
    assert read.subsampling == subsampling
    np.testing.assert_array_equal(read.qtables[0], tables[0])
    if subsampling != "gray":
        np.testing.assert_array_equal(read.qtables[1], tables[1])
    with pytest.raises(ValueError, match="exactly one"):
        jpeg.pillow_encode(image, quality=20, qtables=tables)
    with pytest.raises(ValueError, match="unsupported subsampling '4:1:1'"):
        jpeg.pillow_encode(image, quality=20, subsampling="4:1:1")

"""The ``jpeg-jax-decode`` CLI, called in-process (``main(argv)``) on files made in the test."""

import io
import json
import os
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params
from PIL import Image, ImageCms, ImageOps

from jpeg_jax import decode, export, jpeg, pictures, sampling
from jpeg_jax.models import Generator

GENERATOR = dict(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)
SIZE = (40, 56)  # stored height, width of most test photos (one compilation)


def _params(seed=0):
    return random_params(Generator(**GENERATOR), seed=seed)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return export.save(tmp_path_factory.mktemp("export") / "tiny", GENERATOR, _params())


def _photo(size=SIZE, offset=(100, 150)):
    return photo("astronaut", tuple(slice(o, o + n) for o, n in zip(offset, size)))


def _jpeg(quality=50, subsampling="4:2:0", size=SIZE, **kwargs) -> bytes:
    return pillow_jpeg(_photo(size), quality, subsampling, **kwargs)


def _run(capsys, *argv):
    code = decode.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert ("Traceback" in err) == ("--debug" in argv)
    return code, err


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_writes_lossless_samples_mean_and_std(tmp_path, checkpoint, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "in" / "sub" / "B.JPEG").write_bytes(_jpeg(80, "4:4:4"))
    (tmp_path / "in" / "notes.txt").write_text("not a photo, ignored in folders")
    out = tmp_path / "out"
    code, err = _run(
        capsys, tmp_path / "in", "-o", out, "--checkpoint", checkpoint, "-n", 2, "--mean",
        "--uncertainty", "--seed", 7,
    )  # fmt: skip
    assert code == 0, err
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    expected = [f"a_{k}.png" for k in ("mean", "sample1", "sample2", "std")]
    expected += ["sub", *[f"sub/B_{k}.png" for k in ("mean", "sample1", "sample2", "std")]]
    assert names == sorted(expected)
    # Lossless: the PNGs hold exactly the 8-bit rounding of restore()'s samples.
    ref = sampling.restore(
        checkpoint, jpeg.read_jpeg(tmp_path / "in" / "a.jpg"), 2, jax.random.key(7),
        return_mean=True, return_std=True,
    )  # fmt: skip
    to8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    for i in range(2):
        np.testing.assert_array_equal(_png(out / f"a_sample{i + 1}.png"), to8(ref.samples[i]))
    np.testing.assert_array_equal(_png(out / "a_mean.png"), to8(ref.mean))
    std_map = _png(out / "a_std.png")
    assert std_map.shape == SIZE  # a grey (mode L) map
    np.testing.assert_array_equal(std_map, to8(ref.std.mean(-1) ** 0.25))


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize(
    "kind,subsampling,kwargs",
    [
        ("progressive", "4:2:0", {"progressive": True}),
        ("restart", "4:2:2", {"restart_marker_blocks": 1}),
        ("sampled440", "4:4:0", {}),  # as a 4:2:2 photo rotated losslessly by 90 degrees
        ("gray", "gray", {}),
        ("rotated6", "4:2:0", {"exif": _exif(6)}),
        ("rotated5", "4:4:4", {"exif": _exif(5)}),
        ("rotated3", "4:2:0", {"exif": _exif(3)}),
    ],
)
def test_decodes_kinds_upright_and_consistent(
    tmp_path, checkpoint, capsys, kind, subsampling, kwargs
):
    src = tmp_path / f"{kind}.jpg"
    src.write_bytes(_jpeg(100, subsampling, **kwargs))
    code, err = _run(capsys, src, "-o", tmp_path / "out", "--checkpoint", checkpoint, "--project")
    assert code == 0, err
    # Reference: how a viewer shows the JPEG (Pillow's EXIF transpose of libjpeg's decode).
    with Image.open(src) as im:
        viewer = ImageOps.exif_transpose(im)
        want = np.asarray(viewer.convert("L"), np.float64)
    with Image.open(tmp_path / "out" / f"{kind}_sample1.png") as im:
        assert im.mode == ("L" if kind == "gray" else "RGB")
        got = np.asarray(im.convert("L"), np.float64)
    assert got.shape == want.shape
    # Projected at QF 100, the restoration's luma stays within about a grey level of the file's
    # (subsampled chroma leaves full-resolution colour detail free); a wrong orientation would
    # be tens of levels off.
    assert np.abs(got - want).mean() < 1.0


@pytest.mark.parametrize("fmt", ["png", "tiff", "webp"])
def test_formats_are_lossless_and_keep_the_icc_profile(tmp_path, checkpoint, capsys, fmt):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "p.jpg"
    src.write_bytes(_jpeg(icc_profile=icc))
    code, err = _run(capsys, src, "-o", tmp_path, "--checkpoint", checkpoint, "--format", fmt)
    assert code == 0, err
    ref = sampling.restore(checkpoint, jpeg.read_jpeg(src), 1, jax.random.key(0)).samples[0]
    with Image.open(tmp_path / f"p_sample1.{fmt}") as im:
        assert im.format == pictures.FORMATS[fmt] and im.info.get("icc_profile") == icc
        got = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(got, np.round(np.clip(ref, 0, 1) * 255).astype(np.uint8))


def _replace_sof(data: bytes, marker: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[:i] + bytes([0xFF, marker]) + data[i + 2 :]


def _patch_sof(data: bytes, offset: int, payload: bytes) -> bytes:
    i = data.index(b"\xff\xc0") + offset
    return data[:i] + payload + data[i + len(payload) :]


def _bad_corpus(folder):
    """{file name: words its error line must contain}, written into ``folder``."""
    good = _jpeg()
    cmyk, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(_photo()).convert("CMYK").save(cmyk, "JPEG")
    Image.fromarray(_photo()).save(png, "PNG")
    corpus = {
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"hello, not an image\n", "not a JPEG"),
        "png.jpg": (png.getvalue(), "not a JPEG"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "truncated_scan.jpg": (good[:-200], "truncated"),
        "cmyk.jpg": (cmyk.getvalue(), "CMYK"),
        "12bit.jpg": (_patch_sof(good, 4, bytes([12])), "12-bit"),
        "arithmetic.jpg": (_replace_sof(good, 0xC9), "arithmetic"),
        "lossless.jpg": (_replace_sof(good, 0xC3), "lossless"),
        "huge.jpg": (_patch_sof(good, 5, struct.pack(">HH", 60000, 60000)), "megapixels"),
        "locked.jpg": (good, "cannot read"),
    }
    for name, (data, _) in corpus.items():
        (folder / name).write_bytes(data)
    return {name: words for name, (_, words) in corpus.items()}


def test_bad_inputs_get_one_line_each_and_the_rest_is_processed(
    tmp_path, checkpoint, capsys, monkeypatch
):
    folder = tmp_path / "in"
    folder.mkdir()
    expected = _bad_corpus(folder)
    (folder / "good.jpg").write_bytes(_jpeg())
    locked, real_open = str(folder / "locked.jpg"), open

    def open_denied(file, *args, **kwargs):  # as chmod 000 would (tests may run as root)
        if os.fspath(file) == locked:
            raise PermissionError(13, "Permission denied", file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_denied)
    read = jpeg.read_jpeg
    monkeypatch.setattr(jpeg, "read_jpeg", lambda data: _no_huge(read, data))
    missing = tmp_path / "missing.jpg"
    code, err = _run(capsys, folder, missing, "-o", tmp_path / "out", "--checkpoint", checkpoint)
    assert code == 1
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == len(expected) + 1
    for name, words in expected.items():
        (line,) = [line for line in lines if f"{name}:" in line]
        assert words in line, line
    assert any(str(missing) in line and "no such file" in line for line in lines)
    assert sorted(os.listdir(tmp_path / "out")) == ["good_sample1.png"]


def _no_huge(read, data):
    """read_jpeg, asserting the huge file never reaches it (refused from its header)."""
    assert jpeg.probe_jpeg(data).height < 60000
    return read(data)


def test_force_and_existing_outputs(tmp_path, checkpoint, capsys):
    src = tmp_path / "x.jpg"
    src.write_bytes(_jpeg())
    out = tmp_path / "out"
    argv = [src, "-o", out, "--checkpoint", checkpoint]
    assert _run(capsys, *argv)[0] == 0
    first = (out / "x_sample1.png").read_bytes()
    code, err = _run(capsys, *argv, "--seed", 1)
    assert code == 1 and "exists" in err and "--force" in err
    assert (out / "x_sample1.png").read_bytes() == first
    assert _run(capsys, *argv, "--seed", 1, "--force")[0] == 0
    assert (out / "x_sample1.png").read_bytes() != first


def test_failed_write_leaves_no_partial_file(tmp_path, checkpoint, capsys, monkeypatch):
    src = tmp_path / "x.jpg"
    src.write_bytes(_jpeg())
    out = tmp_path / "out"

    def save_half(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")  # into the temporary file the writer is given
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_half)
    code, err = _run(capsys, src, "-o", out, "--checkpoint", checkpoint)
    assert code == 1 and "x.jpg" in err and "No space left" in err
    assert os.listdir(out) == []
    code, err = _run(capsys, src, "-o", out, "--checkpoint", checkpoint, "--debug")
    assert code == 1 and "OSError" in err and "save_half" in err  # the traceback


def _corrupt_export(path):
    export.save(path, GENERATOR, _params())
    (path / "params.msgpack").write_bytes(b"\x00 not msgpack")
    return path


def test_max_megapixels_governs_pillows_decompression_bomb_limit(
    tmp_path, checkpoint, capsys, monkeypatch
):
    """Pillow warns above PIL.Image.MAX_IMAGE_PIXELS and refuses above twice that (89 / 179
    megapixels by default); --max-megapixels is the decoder's one limit. Scaled down here: a
    limit of 1000 pixels against a 40x56 photo (2240 pixels)."""
    src = tmp_path / "p.jpg"
    src.write_bytes(_jpeg())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(jpeg.JpegError, match="too large for Pillow's decoder"):
        jpeg.read_jpeg(src)  # the library keeps Pillow's limit, with a clear error
    with pytest.warns(Image.DecompressionBombWarning):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
        jpeg.read_jpeg(src)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, err = _run(capsys, src, "-o", tmp_path / "out", "--checkpoint", checkpoint)
    assert code == 0 and err == "", err  # neither refused nor warned about
    assert Image.MAX_IMAGE_PIXELS == 100_000_000  # the default --max-megapixels
    decode.allow_pillow_to_decode(0.0005)  # never lowers it
    assert Image.MAX_IMAGE_PIXELS == 100_000_000


def test_checkpoint_problems_exit_2(tmp_path, capsys):
    src = tmp_path / "x.jpg"
    src.write_bytes(_jpeg())
    not_export = tmp_path / "run"
    not_export.mkdir()
    mismatched = export.save(tmp_path / "bad", dict(GENERATOR, num_feat=16), _params())
    for ckpt, words in [
        (tmp_path / "nope", "no such export"),
        (not_export, "not a jpeg_jax export"),
        (src, "no such export"),
        (mismatched, "do not match"),
        (_corrupt_export(tmp_path / "corrupt"), "unreadable export"),
    ]:
        code, err = _run(capsys, src, "-o", tmp_path / "out", "--checkpoint", ckpt)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_same_output_name_is_refused(tmp_path, checkpoint, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jpg").write_bytes(_jpeg())
    code, err = _run(
        capsys, tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", "-o", tmp_path / "out",
        "--checkpoint", "unused-because-checked-first",
    )  # fmt: skip
    assert code == 2  # the checkpoint is checked before any file
    code, err = _run(
        capsys, tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", "-o", tmp_path / "out",
        "--checkpoint", export.save(tmp_path / "e", GENERATOR, _params()),
    )  # fmt: skip
    assert code == 1 and "same output name" in err and str(tmp_path / "b" / "x.jpg") in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "1", "--uncertainty"],
        ["--tile", "20"],
        ["--tile", "64"],
        ["--overlap", "8"],
        ["-n", "0"],
        ["--format", "jpg"],
    ],
)
def test_argument_errors_exit_2(tmp_path, argv):
    with pytest.raises(SystemExit) as e:
        decode.main(["x.jpg", "-o", str(tmp_path), "--checkpoint", str(tmp_path), *argv])
    assert e.value.code == 2


def test_an_output_that_is_a_file_exits_2_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the output folder should go")
    with pytest.raises(SystemExit) as e:
        decode.main(["x.jpg", "-o", str(tmp_path / "taken"), "--checkpoint", str(tmp_path)])
    assert e.value.code == 2
    assert (
        f"-o/--output {tmp_path / 'taken'}: exists and is not a folder" in capsys.readouterr().err
    )


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "jpeg_jax.decode", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: jpeg-jax-decode" in result.stdout and "plausible original" in result.stdout
    assert "--uncertainty" in result.stdout


def test_temperature(tmp_path, checkpoint, capsys):
    src = tmp_path / "t.jpg"
    src.write_bytes(_jpeg())
    to8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    for temperature in (0.0, 0.5):
        out = tmp_path / f"out{temperature}"
        code, err = _run(
            capsys, src, "-o", out, "--checkpoint", checkpoint, "-n", 2, "--temperature",
            temperature,
        )  # fmt: skip
        assert code == 0, err
        ref = sampling.restore(
            checkpoint, jpeg.read_jpeg(src), 2, jax.random.key(0), temperature=temperature
        )
        for i in range(2):
            np.testing.assert_array_equal(_png(out / f"t_sample{i + 1}.png"), to8(ref.samples[i]))
    deterministic = sampling.restore(checkpoint, jpeg.read_jpeg(src), 1, jax.random.key(0),
                                     deterministic=True)  # fmt: skip
    for i in range(2):
        got = _png(tmp_path / "out0.0" / f"t_sample{i + 1}.png")
        np.testing.assert_array_equal(got, to8(deterministic.samples[0]))


@pytest.mark.parametrize("project", [False, True])
def test_redraw_a_region_of_a_rotated_photo(tmp_path, checkpoint, capsys, project):
    src = tmp_path / "r.jpg"
    src.write_bytes(_jpeg(subsampling="4:2:0", size=(64, 80), exif=_exif(6)))  # shown 80 x 64
    base = ["-o", tmp_path / "plain", "--checkpoint", checkpoint, "-n", 2]
    base += ["--project"] * project
    code, err = _run(capsys, src, *base)
    assert code == 0, err
    base[1] = tmp_path / "redrawn"
    code, err = _run(capsys, src, *base, "--region", "10,20,40,50", "--redraw-seed", 3)
    assert code == 0, err
    # Stored 64 x 80, orientation 6 (shown rotated clockwise): shown rows 20..50 / columns
    # 10..40 are stored rows 64-40..64-10 = 24..54 / columns 20..50, on the grid 16..64 x 16..64,
    # shown: columns 0..48, rows 16..64.
    for i in (1, 2):
        plain = _png(tmp_path / "plain" / f"r_sample{i}.png")
        redrawn = _png(tmp_path / "redrawn" / f"r_sample{i}.png")
        assert plain.shape == (80, 64, 3)
        outside = np.ones(plain.shape[:2], bool)
        outside[16:64, 0:48] = False
        np.testing.assert_array_equal(redrawn[outside], plain[outside])
        assert np.abs(redrawn[24:56, 8:40].astype(int) - plain[24:56, 8:40]).max() > 10


def test_principal_components_of_a_region(tmp_path, checkpoint, capsys):
    src = tmp_path / "p.jpg"
    src.write_bytes(_jpeg(size=(48, 64)))
    argv = [src, "-o", tmp_path, "--checkpoint", checkpoint, "-n", 5, "--seed", 2]
    code, err = _run(capsys, *argv, "--region", "16,0,48,40", "--components", 2)
    assert code == 0, err
    summary = json.loads((tmp_path / "p_pcs.json").read_text())
    assert summary["region"] == {"left": 16, "top": 0, "right": 48, "bottom": 48}
    # Reference: numpy's SVD of the region of restore()'s samples.
    samples = sampling.restore(checkpoint, jpeg.read_jpeg(src), 5, jax.random.key(2)).samples
    x = samples[:, 0:48, 16:48].reshape(5, -1).astype(np.float64)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    np.testing.assert_allclose(summary["variance"], s[:2] ** 2 / 5 * 255**2, rtol=1e-4)
    np.testing.assert_allclose(summary["explained_fraction"], s[:2] ** 2 / np.sum(s**2), rtol=1e-4)
    mean = _png(tmp_path / "p_region_mean.png").astype(float)
    np.testing.assert_allclose(mean, np.round(x.mean(0).reshape(48, 32, 3) * 255), atol=1)
    for i in (1, 2):
        plus = _png(tmp_path / f"p_pc{i}_plus.png").astype(float)
        minus = _png(tmp_path / f"p_pc{i}_minus.png").astype(float)
        assert plus.shape == (48, 32, 3) and np.abs(plus - minus).max() > 5


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--region", "0,0,16,16"], "--region is used by"),
        (["--redraw-seed", "1"], "need --region"),
        (["--components", "2", "--region", "0,0,16,16", "-n", "2"], "at least 3 samples"),
        (["--region", "0,0,16"], "four integers"),
        (["--region", "5,0,5,16", "--redraw-seed", "1"], "LEFT < RIGHT"),
        (["--temperature", "-1"], ">= 0"),
        (["--temperature", "nan"], ">= 0"),
    ],
)
def test_exploration_argument_errors(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        decode.main(["x.jpg", "-o", str(tmp_path), "--checkpoint", str(tmp_path), *argv])
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_region_outside_the_photo_is_a_file_error(tmp_path, checkpoint, capsys):
    src = tmp_path / "s.jpg"
    src.write_bytes(_jpeg())
    code, err = _run(
        capsys, src, "-o", tmp_path / "o", "--checkpoint", checkpoint, "--region", "100,0,120,16",
        "--redraw-seed", 1,
    )  # fmt: skip
    assert code == 1 and "s.jpg: --region 100,0,120,16" in err and "no pixel" in err
    assert not (tmp_path / "o").exists()

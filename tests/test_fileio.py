"""Atomic writes (jpeg_jax.fileio) and the programs that use them: modes under the umask,
nothing half-written.

The reference for every mode is what a plain ``open(path, "w")`` / ``os.makedirs(path)`` gives
under the same umask, made in the test beside the output (and, independently, ``0o666 & ~umask``
/ ``0o777 & ~umask``: 0644/0755 under 022, 0600/0700 under 077).
"""

import os
import stat
import threading

import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params
from PIL import Image

from jpeg_jax import decode, export, fileio, pictures
from jpeg_jax.models import Generator, vgg

UMASKS = [0o022, 0o077]
GENERATOR = dict(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask{u:03o}")
def umask(request):
    """Runs the test under ``request.param`` and restores the process's umask after it."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _plain_file_mode(folder) -> int:
    """The mode ``open(path, "w")`` gives here and now (the reference)."""
    reference = os.path.join(folder, "plain-open-reference")
    with open(reference, "w") as f:
        f.write("x")
    mode = _mode(reference)
    os.remove(reference)
    return mode


def _plain_directory_mode(folder) -> int:
    """The mode ``os.makedirs(path)`` gives here and now (the reference)."""
    reference = os.path.join(folder, "plain-makedirs-reference")
    os.makedirs(reference)
    mode = _mode(reference)
    os.rmdir(reference)
    return mode


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_atomic_write_file_mode_is_that_of_open(tmp_path, umask):
    target = tmp_path / "sub" / "metrics.json"
    with fileio.atomic_write(target) as f:
        f.write("{}")
    assert target.read_text() == "{}"
    assert _mode(target) == _plain_file_mode(tmp_path / "sub") == 0o666 & ~umask
    assert _mode(tmp_path / "sub") == _plain_directory_mode(tmp_path) == 0o777 & ~umask
    fileio.write_file(target, b"new")  # replacing an existing file: same mode again
    assert target.read_bytes() == b"new" and _mode(target) == 0o666 & ~umask
    assert _leftovers(tmp_path / "sub") == []


def test_atomic_directory_mode_is_that_of_makedirs(tmp_path, umask):
    target = tmp_path / "export"
    with fileio.atomic_directory(target) as tmp:
        with open(os.path.join(tmp, "model.json"), "w") as f:
            f.write("{}")
    assert _mode(target) == _plain_directory_mode(tmp_path) == 0o777 & ~umask
    assert _mode(target / "model.json") == _plain_file_mode(tmp_path) == 0o666 & ~umask


def test_write_files_modes_from_a_worker_thread(tmp_path, umask):
    # The explorer and the decoder write from worker threads; the umask is never touched.
    outputs = {tmp_path / f"f{i}.bin": bytes([i]) * 10 for i in range(4)}
    worker = threading.Thread(target=fileio.write_files, args=(outputs,))
    worker.start()
    worker.join(timeout=30)
    for path, data in outputs.items():
        assert path.read_bytes() == data and _mode(path) == 0o666 & ~umask
    assert os.umask(umask) == umask  # still the test's umask


def test_export_directory_and_files_get_umask_modes(tmp_path, umask):
    path = export.save(
        tmp_path / "runs" / "export", GENERATOR, random_params(Generator(**GENERATOR))
    )
    assert _mode(path) == _plain_directory_mode(tmp_path) == 0o777 & ~umask
    for name in ("model.json", "params.msgpack"):
        assert _mode(os.path.join(path, name)) == _plain_file_mode(tmp_path) == 0o666 & ~umask
    if umask == 0o022:
        assert _mode(path) == 0o755 and _mode(os.path.join(path, "model.json")) == 0o644
    assert _leftovers(tmp_path / "runs") == []


def test_decoder_outputs_get_umask_modes(tmp_path, umask):
    checkpoint = export.save(tmp_path / "export", GENERATOR, random_params(Generator(**GENERATOR)))
    src = tmp_path / "x.jpg"
    src.write_bytes(
        pillow_jpeg(photo("astronaut", (slice(100, 124), slice(150, 182))), 30, "4:2:0")
    )
    out = tmp_path / "out"
    argv = [str(src), "-o", str(out), "--checkpoint", str(checkpoint), "-n", "2", "--mean"]
    assert decode.main([*argv, "--uncertainty"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["x_mean.png", "x_sample1.png", "x_sample2.png", "x_std.png"]
    for name in names:
        assert _mode(out / name) == _plain_file_mode(tmp_path) == 0o666 & ~umask


def test_pictures_demo_and_vgg_outputs_get_umask_modes(tmp_path, umask):
    picture = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    pictures.write_pictures({str(tmp_path / "p.png"): picture}, "png", None)
    fileio.write_file(str(tmp_path / "table.md"), "| a |\n")
    params = {
        name: {"kernel": np.zeros(shapes["kernel"], np.float32), "bias": np.zeros(shapes["bias"])}
        for name, shapes in vgg.PARAM_SHAPES.items()
    }
    vgg.save_vgg19(params, tmp_path / "vgg19.npz")
    for name in ("p.png", "table.md", "vgg19.npz"):
        assert _mode(tmp_path / name) == _plain_file_mode(tmp_path) == 0o666 & ~umask
    assert _leftovers(tmp_path) == []


def test_interrupted_file_write_keeps_the_old_content(tmp_path):
    target = tmp_path / "stats.npz"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), fileio.atomic_write(target, "wb") as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_interrupted_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "model.json").write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_directory(target) as tmp:
        with open(os.path.join(tmp, "model.json"), "w") as f:
            f.write("half")
        raise RuntimeError("disk full")
    assert os.listdir(target) == ["model.json"] and (target / "model.json").read_text() == "old"
    assert _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError), fileio.atomic_directory(target, overwrite=False):
        pass


def test_failure_while_staging_leaves_no_target(tmp_path):
    def fail(f):
        f.write(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        fileio.write_files({tmp_path / "a.bin": b"whole", tmp_path / "b.bin": fail})
    assert os.listdir(tmp_path) == []


def test_vgg_conversion_interrupted_leaves_no_file(tmp_path, monkeypatch):
    def savez_half(file, **arrays):
        file.write(b"PK half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_half)
    params = {name: {"kernel": 0.0, "bias": 0.0} for name in vgg.LAYER_NAMES}
    with pytest.raises(KeyboardInterrupt):
        vgg.save_vgg19(params, tmp_path / "vgg19.npz")
    assert os.listdir(tmp_path) == []

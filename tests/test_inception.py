"""FID Inception: weight conversion and loading, resize, forward on random weights.

Parity with pytorch-fid's module (and its resize) is in ``tests/test_parity_golden.py``, against
golden outputs of the real pytorch-fid; here the converter's CLI on a real ``.pth`` (needs torch)
and everything that needs no reference implementation.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
import parity_helpers as ph
import pytest

from jpeg_jax.models import convert_inception, inception

# torchvision documents 27,161,264 parameters for inception_v3 (AuxLogits on, 1000 classes); pool3
# needs neither AuxLogits (conv0 98,560 + conv1 2,459,136 + fc 769,000) nor fc (2,049,000).
POOL3_PARAMS = 27_161_264 - (98_560 + 2_459_136 + 769_000) - 2_049_000


# ----------------------------------------------------------------------------- the CLI (torch)
def test_convert_cli_from_pth(tmp_path, capsys):
    """Reading a real .pth needs torch (not installed in CI): the one path golden files can't."""
    torch = pytest.importorskip("torch", reason="writing a .pth needs torch", exc_type=ImportError)
    golden = ph.load_golden("fid_inception")  # pytorch-fid's real key names and shapes
    state_dict = ph.state_dict(ph.decode_spec(golden["spec"]), int(golden["seed"]))
    pth, out = tmp_path / "random_inception.pth", tmp_path / "fid_inception.npz"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, pth)
    assert convert_inception.main([str(pth), str(out)]) == 0  # fc.* and counters are dropped
    captured = capsys.readouterr()
    assert "not pytorch-fid's published file" in captured.err
    assert f"{POOL3_PARAMS:,} parameters" in captured.out
    loaded = inception.traverse_util.flatten_dict(inception.load_variables(out), sep="/")
    expected = convert_inception.convert_state_dict(state_dict)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(loaded[key]), value)
    kernel = state_dict["Mixed_6b.branch7x7_2.conv.weight"]  # OIHW (128, 128, 1, 7)
    np.testing.assert_array_equal(
        expected["params/Mixed_6b/branch7x7_2/conv/kernel"], kernel.transpose(2, 3, 1, 0)
    )
    assert convert_inception.main([str(pth), str(out)]) == 1  # exists, no --force
    assert "exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------- without PyTorch
def _random_flat(seed=0):
    rng = np.random.default_rng(seed)
    return {
        key: rng.uniform(0.5, 1.5, shape).astype(np.float32)
        for key, shape in inception.variable_shapes().items()
    }


def test_param_count_is_torchvision_inception_without_heads():
    shapes = inception.variable_shapes()
    assert (
        sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("params/")) == POOL3_PARAMS
    )
    # 94 conv + BatchNorm layers: kernel, scale, bias; mean and var.
    assert sum(k.startswith("params/") for k in shapes) == 94 * 3
    assert sum(k.startswith("batch_stats/") for k in shapes) == 94 * 2
    assert shapes["params/Conv2d_1a_3x3/conv/kernel"] == (3, 3, 3, 32)
    assert shapes["params/Mixed_7c/branch_pool/conv/kernel"] == (1, 1, 2048, 192)


def test_convert_state_dict_transposes_and_renames():
    flat = _random_flat()
    state_dict = {"fc.weight": np.zeros((1008, 2048)), "fc.bias": np.zeros(1008)}
    torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}
    torch_leaf.update(mean="running_mean", var="running_var")
    for key, value in flat.items():
        _, *path, leaf = key.split("/")
        value = value.transpose(3, 2, 0, 1) if leaf == "kernel" else value  # HWIO -> OIHW
        state_dict[".".join(path + [torch_leaf[leaf]])] = value
        state_dict[".".join(path[:-1] + ["bn", "num_batches_tracked"])] = np.array(0)
    converted = convert_inception.convert_state_dict(state_dict)
    assert converted.keys() == flat.keys()
    for key, value in flat.items():
        np.testing.assert_array_equal(converted[key], value)


def test_convert_state_dict_rejects_foreign_and_incomplete_dicts():
    with pytest.raises(
        ValueError, match="Unexpected state-dict entry 'Mixed_5b.branch1x1.conv.bias'"
    ):
        convert_inception.convert_state_dict({"Mixed_5b.branch1x1.conv.bias": np.zeros(64)})
    with pytest.raises(ValueError, match=r"unexpected \(1\): params/blocks/0/0/conv/kernel"):
        convert_inception.convert_state_dict({"blocks.0.0.conv.weight": np.zeros((32, 3, 3, 3))})
    with pytest.raises(ValueError, match=r"missing \(469\)"):
        convert_inception.convert_state_dict({"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3))})
    with pytest.raises(ValueError, match="wrong shape"):
        convert_inception.convert_state_dict({"Conv2d_1a_3x3.conv.weight": np.zeros((3, 3, 3, 3))})


def test_load_variables_round_trip(tmp_path):
    flat = _random_flat(1)
    path = tmp_path / "fid_inception.npz"
    convert_inception.save_variables(flat, path)
    loaded = inception.traverse_util.flatten_dict(inception.load_variables(path), sep="/")
    assert loaded.keys() == flat.keys()
    for key, value in flat.items():
        np.testing.assert_array_equal(np.asarray(loaded[key]), value)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_load_variables_errors_say_how_to_get_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        inception.load_variables(tmp_path / "nothing.npz")
    pth = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    pth.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="convert it first.*convert_inception"):
        inception.load_variables(pth)
    for name, write in [
        ("text.npz", lambda p: p.write_text("hello")),
        ("array.npz", lambda p: p.write_bytes(_npy_bytes(np.zeros(3)))),
        ("other.npz", lambda p: np.savez(p, params=np.zeros(3))),
    ]:
        with pytest.raises(ValueError, match="convert_inception"):
            write(tmp_path / name)
            inception.load_variables(tmp_path / name)
    flat = _random_flat()
    flat["params/Conv2d_1a_3x3/conv/kernel"] = np.zeros((3, 3, 3, 16), np.float32)
    convert_inception.save_variables(flat, tmp_path / "bad_shape.npz")
    with pytest.raises(ValueError, match="wrong shape.*Conv2d_1a_3x3"):
        inception.load_variables(tmp_path / "bad_shape.npz")


def test_convert_cli_reports_missing_input(tmp_path, capsys):
    assert convert_inception.main([str(tmp_path / "none.pth"), str(tmp_path / "out.npz")]) == 1
    assert "releases" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("in_size,out_size", [(5, 12), (8, 20), (16, 16)])
def test_resize_upsampling_matches_jax_image_resize(in_size, out_size):
    # Upsampling has no anti-aliasing question: half-pixel linear interpolation with edge clamping
    # is what jax.image.resize does too (an independent implementation).
    images = np.random.default_rng(4).random((2, in_size, in_size + 1, 3), dtype=np.float32)
    size = (out_size, out_size + 2)
    expected = jax.image.resize(images, (2, *size, 3), method="linear", antialias=False)
    ours = inception.resize_bilinear(jnp.asarray(images), size)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=0, atol=1e-6)


def test_resize_shrinking_samples_without_antialiasing():
    # 2x shrink: each output sits half-way between two inputs -> their mean, no wider blur.
    row = np.arange(8, dtype=np.float32) ** 2
    images = np.broadcast_to(row[None, None, :, None], (1, 4, 8, 1))
    out = np.asarray(inception.resize_bilinear(jnp.asarray(images), (4, 4)))
    np.testing.assert_allclose(out[0, 0, :, 0], (row[0::2] + row[1::2]) / 2, rtol=1e-6)


def test_forward_on_random_weights_is_per_image():
    variables = inception.traverse_util.unflatten_dict(
        {k: jnp.asarray(v) for k, v in _random_flat(2).items()}, sep="/"
    )
    variables["params"] = jax.tree.map(lambda v: v * 0.05, variables["params"])
    images = np.random.default_rng(5).random((3, 75, 75, 3), dtype=np.float32)
    apply = jax.jit(inception.FIDInceptionV3(resize_input=False).apply)
    features = np.asarray(apply(variables, images))
    assert features.shape == (3, inception.FEATURE_DIM) and features.dtype == np.float32
    assert np.all(np.isfinite(features)) and np.all(features >= 0)  # mean of ReLU outputs
    reordered = np.asarray(apply(variables, images[::-1]))  # same shape: no second compile
    np.testing.assert_allclose(reordered[::-1], features, rtol=1e-5, atol=1e-6)

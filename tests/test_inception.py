"""FID Inception: parity with pytorch-fid's module, resize, weight conversion and loading.

The parity reference is pytorch-fid's own ``pytorch_fid/inception.py`` (its ``InceptionV3``
wrapper, ``fid_inception_v3`` and the ``FIDInceptionA/C/E_1/E_2`` blocks), run under random
weights. pytorch-fid subclasses torchvision's Inception blocks; when torchvision cannot be
imported (PyPI's torchvision fails beside torch 2.13 from local disk: 'operator torchvision::nms
does not exist'), the test supplies those base classes as a torch.nn transcription of
torchvision's ``models/inception.py`` (``BasicConv2d``, ``InceptionA``-``E``, ``Inception3``) and
loads pytorch-fid's file against it.
"""

import importlib.util
import io
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeg_jax.models import convert_inception, inception

# torchvision documents 27,161,264 parameters for inception_v3 (AuxLogits on, 1000 classes); pool3
# needs neither AuxLogits (conv0 98,560 + conv1 2,459,136 + fc 769,000) nor fc (2,049,000).
POOL3_PARAMS = 27_161_264 - (98_560 + 2_459_136 + 769_000) - 2_049_000


# ----------------------------------------------------------------------------- torch reference
def _torchvision_stub(torch):
    """torchvision.models.inception's classes, transcribed (structure and names) with torch.nn."""
    nn, F = torch.nn, torch.nn.functional

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, **kwargs):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class InceptionA(nn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    class InceptionB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3(x)
            bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class InceptionC(nn.Module):
        def __init__(self, cin, channels_7x7):
            super().__init__()
            c7, row, col = (
                channels_7x7,
                dict(kernel_size=(1, 7), padding=(0, 3)),
                dict(kernel_size=(7, 1), padding=(3, 0)),
            )
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, **row)
            self.branch7x7_3 = BasicConv2d(c7, 192, **col)
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    class InceptionD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = self.branch7x7x3_1(x)
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
            return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class InceptionE(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    class Inception3(nn.Module):
        def __init__(self, num_classes=1000, aux_logits=True, weights=None, init_weights=None):
            super().__init__()
            assert not aux_logits and weights is None
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b = InceptionA(192, pool_features=32)
            self.Mixed_5c = InceptionA(256, pool_features=64)
            self.Mixed_5d = InceptionA(288, pool_features=64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, channels_7x7=128)
            self.Mixed_6c = InceptionC(768, channels_7x7=160)
            self.Mixed_6d = InceptionC(768, channels_7x7=160)
            self.Mixed_6e = InceptionC(768, channels_7x7=192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280)
            self.Mixed_7c = InceptionE(2048)
            self.fc = nn.Linear(2048, num_classes)

    models = types.ModuleType("torchvision.models")
    models.inception = types.ModuleType("torchvision.models.inception")
    for cls in (
        BasicConv2d,
        InceptionA,
        InceptionB,
        InceptionC,
        InceptionD,
        InceptionE,
        Inception3,
    ):
        setattr(models.inception, cls.__name__, cls)
    models.inception_v3 = lambda **kwargs: Inception3(**kwargs)
    torchvision = types.ModuleType("torchvision")
    torchvision.__version__, torchvision.models = "0.28.0", models
    return {
        "torchvision": torchvision,
        "torchvision.models": models,
        "torchvision.models.inception": models.inception,
    }


def _load_pytorch_fid_inception(torch):
    """pytorch-fid's inception.py, against real torchvision if it imports, else the stub."""
    pytorch_fid = pytest.importorskip(
        "pytorch_fid", reason="parity needs pytorch-fid (pip install pytorch-fid --no-deps)"
    )
    path = os.path.join(os.path.dirname(pytorch_fid.__file__), "inception.py")
    with pytest.MonkeyPatch.context() as mp:
        try:
            import torchvision.models.inception  # noqa: F401
        except Exception:  # ImportError, or torchvision's RuntimeError beside a newer torch
            for name, module in _torchvision_stub(torch).items():
                mp.setitem(sys.modules, name, module)
        file_spec = importlib.util.spec_from_file_location("_pytorch_fid_inception", path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    return module


def _randomize(torch, net):
    """Random conv weights (He scale) and BatchNorm affine/statistics, so every leaf matters."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 1.5, generator=gen)
                layer.bias.normal_(0.0, 0.2, generator=gen)
                layer.running_mean.normal_(0.0, 0.2, generator=gen)
                layer.running_var.uniform_(0.5, 2.0, generator=gen)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip(
        "torch", reason="the PyTorch reference needs torch", exc_type=ImportError
    )


@pytest.fixture(scope="module")
def reference(torch):
    """(torch, pytorch-fid ``InceptionV3([3])`` and its Inception3 state dict), random weights."""
    module = _load_pytorch_fid_inception(torch)
    built = []
    build = module.fid_inception_v3
    with pytest.MonkeyPatch.context() as mp:  # no download, no weight loading: random weights
        mp.setattr(module, "load_state_dict_from_url", lambda *args, **kwargs: {})
        mp.setattr(torch.nn.Module, "load_state_dict", lambda self, *args, **kwargs: None)
        mp.setattr(module, "fid_inception_v3", lambda: built.append(build()) or built[-1])
        model = module.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    _randomize(torch, built[0])  # the wrapper's blocks share these modules
    return torch, model, built[0].state_dict()


def _torch_features(reference, images_nhwc, *, resize):
    torch, model, _ = reference
    model.resize_input = resize  # pytorch-fid reads the flag in forward
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return model(x)[0][:, :, 0, 0].numpy()


def _our_features(variables, images_nhwc, *, resize):
    net = inception.FIDInceptionV3(resize_input=resize)
    return np.asarray(jax.jit(net.apply)(variables, jnp.asarray(images_nhwc)))


def _converted(reference):
    flat = convert_inception.convert_state_dict(reference[2])
    return jax.tree.map(jnp.asarray, inception.traverse_util.unflatten_dict(flat, sep="/"))


def _assert_close_features(ours, theirs):
    # float32 through 94 conv layers: agree to 1e-5 of the feature scale (measured 4e-7).
    scale = np.abs(theirs).max()
    assert scale > 0.1  # random weights keep activations O(1); a dead network would prove nothing
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * scale)


# ----------------------------------------------------------------------------- parity
def test_pool3_matches_pytorch_fid_without_resize(reference):
    # 139 px is the smallest input whose last blocks still see 3x3 maps, so the E_2 max pool and
    # the padding-free average pools differ from their alternatives (at 75-138 px they are 1x1).
    images = np.random.default_rng(1).random((2, 139, 150, 3), dtype=np.float32)
    ours = _our_features(_converted(reference), images, resize=False)
    _assert_close_features(ours, _torch_features(reference, images, resize=False))


def test_pool3_matches_pytorch_fid_with_resize_to_299(reference):
    images = np.random.default_rng(2).random((1, 77, 90, 3), dtype=np.float32)
    ours = _our_features(_converted(reference), images, resize=True)
    _assert_close_features(ours, _torch_features(reference, images, resize=True))


def test_param_count_matches_pytorch_fid_module(reference):
    torch_count = sum(
        value.numel()
        for key, value in reference[1].state_dict().items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert torch_count == POOL3_PARAMS
    shapes = inception.variable_shapes()
    assert sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("params/")) == torch_count


@pytest.mark.parametrize("in_size,out_size", [(80, 299), (333, 299), (299, 299), (7, 5)])
def test_resize_matches_torch_interpolate(torch, in_size, out_size):
    images = np.random.default_rng(3).random((2, in_size, in_size + 3, 3), dtype=np.float32)
    size = (out_size, out_size + 1)
    expected = (
        torch.nn.functional.interpolate(
            torch.from_numpy(images.transpose(0, 3, 1, 2)),
            size=size,
            mode="bilinear",
            align_corners=False,
        )
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    ours = np.asarray(inception.resize_bilinear(jnp.asarray(images), size))
    # Same weights bit for bit; what is left is float32 summation order (measured 1.2e-7).
    np.testing.assert_allclose(ours, expected, rtol=0, atol=5e-7)


def test_convert_cli_from_pth(reference, tmp_path, capsys):
    torch, _, state_dict = reference
    pth, out = tmp_path / "random_inception.pth", tmp_path / "fid_inception.npz"
    torch.save(state_dict, pth)  # includes fc.* and num_batches_tracked, which are dropped
    assert convert_inception.main([str(pth), str(out)]) == 0
    captured = capsys.readouterr()
    assert "not pytorch-fid's published file" in captured.err
    assert f"{POOL3_PARAMS:,} parameters" in captured.out
    loaded = inception.traverse_util.flatten_dict(inception.load_variables(out), sep="/")
    expected = convert_inception.convert_state_dict(state_dict)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(loaded[key]), value)
    kernel = state_dict["Mixed_6b.branch7x7_2.conv.weight"].numpy()  # OIHW (128, 128, 1, 7)
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

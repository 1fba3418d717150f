"""Parity with the PyTorch reference implementations, without PyTorch: golden files.

``tests/golden/*.npz`` hold the outputs of BasicSR's ``RRDBNet``, pytorch-fid's FID Inception
(and its resize), torchvision's VGG19 through BasicSR's ``VGGFeatureExtractor`` and BasicSR's
``PerceptualLoss``, computed once by ``tests/golden/make_golden.py`` (its docstring gives the
versions and the command) under seeded random weights and inputs. Here the same weights are drawn
again (``parity_helpers``, checked against the stored SHA-256), written under the real modules'
state-dict key names, loaded through OUR converters and file formats, and our Flax models' outputs
are compared with the stored ones.

Tolerance: each reference was computed in float64 and stored with ``err32``, the largest
deviation of the reference's own float32 run from it. Our float32 run may deviate by 4x that
(plus 4 float32 ulps of the output scale, for scalars where ``err32`` is tiny): an independent
float32 implementation of the same arithmetic differs from the exact result by the same order,
and measured 0.5-1.6x ``err32`` on every output here. Any wrong layout, name, padding or
normalisation errs by orders of magnitude more.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import parity_helpers as ph
import pytest
from flax import traverse_util

from jpeg_jax import losses
from jpeg_jax.models import Generator, convert, convert_inception, inception, vgg
from jpeg_jax.models.generator import abstract_params

EPS32 = float(np.finfo(np.float32).eps)


def _tolerance(golden, prefix: str, reference: np.ndarray) -> float:
    return 4.0 * (float(golden[f"{prefix}_err32"]) + EPS32 * float(np.abs(reference).max()))


def _assert_digest(golden, arrays, skip=()):
    assert ph.digest(arrays, skip) == str(golden["digest"]), (
        "the seeded weights/inputs differ from those the golden file was made with (NumPy's "
        "random streams changed?): regenerate with tests/golden/make_golden.py"
    )


def _image(golden, prefix: str) -> np.ndarray:
    return ph.images(tuple(golden[f"{prefix}_shape"]), int(golden[f"{prefix}_seed"]))


# ----------------------------------------------------------------------------- RRDBNet
@pytest.fixture(scope="module")
def rrdbnet():
    golden = ph.load_golden("rrdbnet")
    state_dict = ph.state_dict(ph.decode_spec(golden["spec"]), int(golden["seed"]))
    x = ph.images(tuple(golden["image_shape"]), int(golden["image_seed"]))
    _assert_digest(golden, {**state_dict, "images": x})
    return golden, state_dict, x, json.loads(str(golden["sizes"]))


def test_generator_matches_basicsr_rrdbnet(rrdbnet):
    golden, state_dict, x, sizes = rrdbnet
    assert "conv_up2.weight" in state_dict and "body.2.rdb3.conv5.bias" in state_dict
    params = convert.params_from_basicsr(state_dict)
    gen = Generator(**sizes, noise=False)
    out = np.asarray(jax.jit(lambda p, y: gen.apply({"params": p}, y))(params, x))
    ref = golden["out"]
    assert np.abs(ref).max() > 1.0  # a non-trivial comparison
    np.testing.assert_allclose(out, ref, rtol=0, atol=_tolerance(golden, "out", ref))


def test_ported_weights_into_noisy_film_generator_start_deterministic(rrdbnet):
    """Zero noise-channel weights and identity FiLM: the ported noisy model is BasicSR's."""
    golden, state_dict, x, sizes = rrdbnet
    gen = Generator(**sizes, noise=True, film=True)
    qtables = jnp.full((x.shape[0], 2, 8, 8), 7, jnp.int32)
    # FiLM's projections are zero at init (gamma = beta = 0); zeros everywhere stand for that
    # without compiling an init, and every non-FiLM leaf must be replaced by the converter.
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_params(gen))
    params = convert.params_from_basicsr(state_dict, noise=True, template=template)
    apply = jax.jit(lambda p, y, q, k: gen.apply({"params": p}, y, q, rngs={"noise": k}))
    out = np.asarray(apply(params, x, qtables, jax.random.key(5)))
    ref = golden["out"]
    np.testing.assert_allclose(out, ref, rtol=0, atol=_tolerance(golden, "out", ref))
    flat = traverse_util.flatten_dict(params)
    assert float(flat[("body_1", "rdb2", "conv3", "noise_scale")]) == 1.0
    np.testing.assert_array_equal(flat[("body_1", "rdb2", "conv3", "kernel")][:, :, -1], 0.0)


@pytest.mark.parametrize("noise", [False, True])
def test_real_esrgan_x2_keys_fill_the_paper_size_generator(noise):
    """Every parameter of the paper's generator comes from BasicSR's paper-size x2 RRDBNet."""
    spec = ph.decode_spec(ph.load_golden("rrdbnet")["paper_spec"])
    assert len(spec) == 2 * (5 + 23 * 3 * 5 + 1)  # 5 head/tail convs, 23 x 3 RDBs, conv_up2
    state_dict = ph.state_dict(spec, 0, placeholders=[key for key, _ in spec])  # no memory
    params = convert.params_from_basicsr(state_dict, noise=noise)
    ours = traverse_util.flatten_dict(params)
    expected = traverse_util.flatten_dict(abstract_params(Generator(noise=noise)))
    assert ours.keys() == expected.keys()
    for key, leaf in expected.items():
        assert ours[key].shape == leaf.shape, key
    # BasicSR's parameter count minus conv_up2 (and plus our noise inputs) is ours.
    basicsr_count = sum(int(np.prod(s)) for k, s in spec if not k.startswith("conv_up2"))
    noise_count = sum(
        int(np.prod(leaf.shape[:2])) * leaf.shape[3] + 1
        for key, leaf in expected.items()
        if key[-1] == "kernel" and (key[0].startswith("body_") or key[0] == "conv_up1")
    )
    ours_count = sum(int(np.prod(a.shape)) for a in ours.values())
    assert ours_count == basicsr_count + (noise_count if noise else 0)


# ----------------------------------------------------------------------------- FID Inception
@pytest.fixture(scope="module")
def fid_inception(tmp_path_factory):
    golden = ph.load_golden("fid_inception")
    state_dict = ph.state_dict(ph.decode_spec(golden["spec"]), int(golden["seed"]))
    images = {name: _image(golden, f"{name}_image") for name in ("plain", "resized")}
    _assert_digest(golden, {**state_dict, **images})
    # The path of `python -m jpeg_jax.models.convert_inception` after torch.load: convert, save
    # the .npz, read it back as evaluation does.
    path = tmp_path_factory.mktemp("fid") / "fid_inception.npz"
    convert_inception.save_variables(convert_inception.convert_state_dict(state_dict), path)
    return golden, state_dict, images, inception.load_variables(path)


@pytest.mark.parametrize("name,resize", [("plain", False), ("resized", True)])
def test_fid_inception_matches_pytorch_fid(fid_inception, name, resize):
    # "plain": 139 px is the smallest input whose last blocks still see 3x3 maps, so the E_2 max
    # pool and the padding-free average pools differ from their alternatives; "resized": 77x90
    # goes through pytorch-fid's bilinear resize to 299 first.
    golden, _, images, variables = fid_inception
    net = inception.FIDInceptionV3(resize_input=resize)
    ours = np.asarray(jax.jit(net.apply)(variables, jnp.asarray(images[name])))
    ref = golden[f"{name}_features"]
    assert ours.shape == ref.shape == (images[name].shape[0], inception.FEATURE_DIM)
    assert ref.max() > 1.0
    np.testing.assert_allclose(ours, ref, rtol=0, atol=_tolerance(golden, name, ref))


def test_fid_inception_parameter_count_is_pytorch_fid_pool3(fid_inception):
    from test_inception import POOL3_PARAMS

    _, state_dict, _, _ = fid_inception
    count = sum(
        v.size
        for k, v in state_dict.items()
        if not k.startswith("fc.") and not k.endswith(("running_mean", "running_var", "tracked"))
    )
    assert count == POOL3_PARAMS


@pytest.mark.parametrize("case", range(4))
def test_resize_matches_torch_interpolate(fid_inception, case):
    golden = fid_inception[0]
    images = _image(golden, f"resize{case}_image")
    shape = tuple(golden[f"resize{case}_shape"])
    ours = np.asarray(inception.resize_bilinear(jnp.asarray(images), shape[1:3]))
    assert ours.shape == shape
    ref = golden[f"resize{case}_values"]
    ours = ours.reshape(-1)[golden[f"resize{case}_index"]]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=_tolerance(golden, f"resize{case}", ref))


# ----------------------------------------------------------------------------- VGG19
@pytest.fixture(scope="module")
def vgg19(tmp_path_factory):
    golden = ph.load_golden("vgg19")
    spec = ph.decode_spec(golden["full_spec"])  # torchvision's vgg19() state dict, all of it
    classifier = [key for key, _ in spec if not key.startswith("features.")]
    state_dict = ph.state_dict(spec, int(golden["seed"]), placeholders=classifier)
    x = ph.images(tuple(golden["image_shape"]), int(golden["image_seed"]))
    shape = tuple(golden["perceptual_shape"])
    pair = [ph.images(shape, int(seed)) for seed in golden["perceptual_seeds"]]
    _assert_digest(golden, {**state_dict, "images": x, "gt": pair[0], "x_hat": pair[1]}, classifier)
    # The path of `python -m jpeg_jax.models.vgg` after torch.load, then the loader training uses.
    path = tmp_path_factory.mktemp("vgg") / "vgg19.npz"
    vgg.save_vgg19(vgg.convert_torchvision_vgg19(state_dict), path)
    return golden, vgg.load_vgg19(path), x, pair


def test_vgg19_features_match_torchvision(vgg19):
    golden, params, x, _ = vgg19
    feats = jax.jit(vgg.VGG19Features().apply)({"params": params}, jnp.asarray(x))
    layers = json.loads(str(golden["layers"]))
    assert layers == list(vgg.LAYER_NAMES) == list(feats)
    for name in layers:
        ours = np.asarray(feats[name])
        assert ours.shape == tuple(golden[f"{name}_shape"]), name
        ref = golden[f"{name}_values"]
        tol = _tolerance(golden, name, ref)
        sampled = ours.reshape(-1)[golden[f"{name}_index"]]
        np.testing.assert_allclose(sampled, ref, rtol=0, atol=tol, err_msg=name)
        channel_mean = ours.mean(axis=(0, 1, 2))
        np.testing.assert_allclose(channel_mean, golden[f"{name}_channel_mean"], 0, tol, name)


def test_perceptual_loss_matches_basicsr(vgg19):
    golden, params, _, (gt, x_hat) = vgg19
    assert json.loads(str(golden["perceptual_layer_weights"])) == losses.PERCEPTUAL_LAYER_WEIGHTS
    ours = float(losses.perceptual_loss(params, jnp.asarray(gt), jnp.asarray(x_hat)))
    ref = golden["perceptual_loss"]
    assert ref > 0.1
    np.testing.assert_allclose(ours, ref, rtol=0, atol=_tolerance(golden, "perceptual", ref))

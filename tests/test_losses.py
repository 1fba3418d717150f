"""Losses against closed forms and loop references (Eq. 9, 10, 14-16)."""

import io
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import fft
from skimage import data

from jpeg_jax import losses
from jpeg_jax.models import vgg


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- adversarial


def test_critic_loss_values():
    zeros = jnp.zeros(4)
    np.testing.assert_allclose(losses.critic_loss(zeros, zeros), 2 * math.log(2), rtol=1e-6)
    real, fake = _rng().normal(size=(2, 8)) * 3
    ref = np.mean(np.log1p(np.exp(-real))) + np.mean(np.log1p(np.exp(fake)))
    np.testing.assert_allclose(losses.critic_loss(real, fake), ref, rtol=1e-5)
    # A confident, correct critic has ~0 loss; large logits stay finite.
    big = jnp.full(3, 100.0)
    np.testing.assert_allclose(losses.critic_loss(big, -big), 0.0, atol=1e-30)
    assert np.isfinite(losses.critic_loss(-big, big))


def test_generator_adversarial_loss_values():
    np.testing.assert_allclose(losses.generator_adversarial_loss(jnp.zeros(5)), math.log(2))
    fake = _rng(1).normal(size=7) * 2
    np.testing.assert_allclose(
        losses.generator_adversarial_loss(fake), np.mean(np.log1p(np.exp(-fake))), rtol=1e-5
    )
    grad = jax.grad(losses.generator_adversarial_loss)(jnp.zeros(4))
    np.testing.assert_allclose(grad, -0.5 / 4)  # d softplus(-l)/dl = -sigmoid(-l), mean over 4


def test_r1_of_linear_critic_is_half_weight_norm_w_squared():
    rng = _rng(2)
    x, y = rng.uniform(size=(2, 3, 4, 5, 3)).astype(np.float32)
    w, v = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    critic = lambda w, x, y: jnp.sum(x * w, axis=(1, 2, 3)) + jnp.sum(y * v, axis=(1, 2, 3))
    for weight in (1.0, 10.0):
        penalty, logits = losses.r1_penalty_and_logits(
            lambda a, b: critic(w, a, b), x, y, weight=weight
        )
        np.testing.assert_allclose(penalty, weight / 2 * np.sum(w**2), rtol=1e-5)
        np.testing.assert_allclose(logits, critic(w, x, y), rtol=1e-6)
    # Double backprop to the critic params: d/dw (lambda/2 |w|^2) = lambda w.
    grad_w = jax.grad(lambda w: losses.r1_penalty(lambda a, b: critic(w, a, b), x, y, weight=3.0))
    np.testing.assert_allclose(grad_w(w), 3.0 * w, rtol=1e-5)


def test_r1_matches_per_sample_loop():
    rng = _rng(3)
    x, y = rng.uniform(size=(2, 4, 6, 6, 3)).astype(np.float32)
    w = rng.normal(size=(6, 6, 3)).astype(np.float32)
    critic = lambda a, b: jnp.sum(jnp.tanh(a * w) * b + a**2, axis=(1, 2, 3))
    single = lambda a, b: critic(a[None], b[None])[0]
    norms = [np.sum(np.square(jax.grad(single)(x[i], y[i]))) for i in range(4)]
    np.testing.assert_allclose(losses.r1_penalty(critic, x, y, weight=2.0), np.mean(norms), 1e-5)


# ----------------------------------------------------------------------------- consistency


def _hinge_ref(e):
    e = np.abs(e)
    return np.where(e <= 0.4, 0.0, np.where(e <= 0.6, 2.5 * (e - 0.4) ** 2, e - 0.5))


@pytest.mark.parametrize(("e", "value"), [(0.3, 0.0), (0.5, 0.025), (0.7, 0.2), (0.4, 0.0)])
def test_consistency_hinge_closed_form(e, value):
    q = jnp.array([3, -7, 0], jnp.int32)
    for sign in (1.0, -1.0):
        c = q + sign * e
        np.testing.assert_allclose(losses.consistency_hinge(c, q), value, rtol=1e-5, atol=1e-7)


def test_consistency_hinge_mean_continuity_and_gradient():
    e = _rng(4).uniform(-2, 2, size=(3, 64)).astype(np.float32)
    q = np.round(_rng(5).normal(size=(3, 64)) * 5)
    np.testing.assert_allclose(losses.consistency_hinge(q + e, q), _hinge_ref(e).mean(), 1e-5)
    # Continuous value and slope at both margins.
    f = lambda t: losses.consistency_hinge(jnp.array([t]), jnp.zeros(1))
    for edge in (0.4, 0.6):
        np.testing.assert_allclose(f(edge - 1e-4), f(edge + 1e-4), atol=2e-4)
        np.testing.assert_allclose(jax.grad(f)(edge - 1e-4), jax.grad(f)(edge + 1e-4), atol=1e-3)
    np.testing.assert_allclose(jax.grad(f)(0.5), 0.5, rtol=1e-5)  # 5 (e - 0.4)
    np.testing.assert_allclose(jax.grad(f)(-0.7), -1.0)
    np.testing.assert_allclose(jax.grad(f)(0.0), 0.0)


def _jpeg_or_skip():
    from jpeg_jax import jpeg

    if not hasattr(jpeg, "quantized_dct"):
        pytest.skip("jpeg.quantized_dct not on this branch yet")
    return jpeg


def _scipy_quantized_dct_444(images, qtables):
    """Reference: JFIF YCbCr, level shift, 8x8 orthonormal DCT-II per block, / Q (4:4:4)."""
    rgb = images.astype(np.float64) * 255
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ycc = rgb @ m.T + np.array([0.0, 128.0, 128.0]) - 128.0
    b, h, w, _ = ycc.shape
    blocks = ycc.reshape(b, h // 8, 8, w // 8, 8, 3).transpose(5, 0, 1, 3, 2, 4)
    coeffs = fft.dctn(blocks, type=2, norm="ortho", axes=(-2, -1))
    tables = qtables[:, [0, 1, 1]].transpose(1, 0, 2, 3)[:, :, None, None]  # (3, B, 1, 1, 8, 8)
    return coeffs / tables  # (3, B, Bh, Bw, 8, 8)


def test_consistency_penalty_matches_scipy_reference_444():
    jpeg = _jpeg_or_skip()
    rng = _rng(6)
    x_hat = rng.uniform(size=(2, 16, 24, 3)).astype(np.float32)
    qtables = np.stack([jpeg.quality_to_qtables(q) for q in (10, 50)]).astype(np.int32)
    c = _scipy_quantized_dct_444(x_hat, qtables)
    q = np.round(c) + rng.integers(-1, 2, size=c.shape)  # errors of all sizes
    coeffs = jpeg.Coefficients(*(jnp.asarray(a, jnp.int32) for a in q))
    got = losses.consistency_penalty(x_hat, coeffs, qtables, subsampling="4:4:4", exact=False)
    np.testing.assert_allclose(got, _hinge_ref(c - q).mean(), rtol=1e-4, atol=1e-6)


def test_consistency_penalty_averages_all_coefficients_420():
    jpeg = _jpeg_or_skip()
    rng = _rng(7)
    x_hat = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
    qtables = jnp.stack([jpeg.quality_to_qtables(5), jpeg.quality_to_qtables(50)])
    c = jax.jit(jpeg.quantized_dct)(x_hat, qtables)  # 4:2:0 by default
    q = [np.round(np.asarray(a)) + rng.integers(-1, 2, size=a.shape) for a in c]
    flat = np.concatenate([(np.asarray(a) - b).ravel() for a, b in zip(c, q, strict=True)])
    coeffs = jpeg.Coefficients(*q)
    penalty = jax.jit(losses.consistency_penalty)
    np.testing.assert_allclose(penalty(x_hat, coeffs, qtables), _hinge_ref(flat).mean(), 1e-5)
    # The target's own (rounded) coefficients are consistent: |c - round(c)| <= 0.5.
    target = jax.jit(jpeg.encode)(x_hat, qtables)
    assert penalty(x_hat, target, qtables) <= 0.025 + 1e-6
    grad = jax.jit(jax.grad(penalty))(x_hat, coeffs, qtables)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize("exact", [True, False])
def test_consistency_gradient_reaches_pixels_outside_the_range(exact):
    """C's gradient is the float pipeline's everywhere, out-of-range pixels included.

    The generator's output is not clipped, and the authors' float pipeline passes gradient to
    pixels outside [0, 1]. With every coefficient in the hinge's linear part (|c - q| > 0.6),
    dC/dc = sign(c - q) / N whatever the exact values, so the gradient is the transpose of the
    float JPEG map (x255, JFIF colour matrix, orthonormal DCT, / Q; scipy below) applied to it.
    A zero gradient outside [0, 1] (a plain clamp in the exact path) fails this test.
    """
    jpeg = _jpeg_or_skip()
    rng = _rng(11)
    x_hat = rng.uniform(0.1, 0.9, size=(1, 16, 16, 3)).astype(np.float32)
    x_hat[0, :4, :5] = 1.3  # overshoots: would be saved as 255
    x_hat[0, 9:, 10:] = -0.25  # and as 0
    qtables = jpeg.quality_to_qtables(50)[None]
    c = _scipy_quantized_dct_444(np.clip(x_hat, 0, 1) if exact else x_hat, qtables)
    sign = np.where(rng.uniform(size=c.shape) < 0.5, -1.0, 1.0)
    q = np.round(c) + 3 * sign  # |c - q| >= 2.5 (exact: up to 8-bit rounding): linear part
    coeffs = jpeg.Coefficients(*(jnp.asarray(a, jnp.int32) for a in q))
    penalty = lambda x: losses.consistency_penalty(
        x, coeffs, qtables, subsampling="4:4:4", exact=exact
    )
    grad = np.asarray(jax.jit(jax.grad(penalty))(jnp.asarray(x_hat)))
    # Reference: J^T (dC/dc) for c = DCT(YCbCr(255 x) - 128) / Q, J written out with scipy.
    dc = -sign / sign.size  # sign(c - q) = -sign
    tables = qtables[:, [0, 1, 1]].transpose(1, 0, 2, 3)[:, :, None, None]
    dblocks = fft.idctn(dc / tables, type=2, norm="ortho", axes=(-2, -1))  # DCT^T = IDCT
    dycc = dblocks.transpose(1, 2, 4, 3, 5, 0).reshape(1, 16, 16, 3)
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    expected = 255.0 * dycc @ m
    assert np.abs(grad[0, :4, :5]).min() > 0 and np.abs(grad[0, 9:, 10:]).min() > 0
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_consistency_with_a_libjpeg_file():
    """A Pillow (libjpeg) file: its decode is consistent; encode(x) agrees with its coefficients."""
    jpeg = _jpeg_or_skip()
    image = data.astronaut()[:64, 32:128]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=10)
    file = jpeg.read_jpeg(buf.getvalue())
    coeffs = jax.tree.map(lambda a: a[None], file.coefficients)
    penalty = jax.jit(losses.consistency_penalty, static_argnames="subsampling")
    y = jnp.asarray(file.pixels, jnp.float32)[None] / 255
    assert penalty(y, coeffs, file.qtables, subsampling=file.subsampling) < 1e-4
    x = jnp.asarray(image, jnp.float32)[None] / 255
    encoded = jax.jit(jpeg.encode, static_argnames="subsampling")(
        x, file.qtables, subsampling=file.subsampling
    )
    for ours, theirs in zip(encoded, coeffs, strict=True):
        assert np.mean(np.asarray(ours) != np.asarray(theirs)) < 1e-2


# ----------------------------------------------------------------------------- moments


class _ToyGenerator(nn.Module):
    @nn.compact
    def __call__(self, y, qtables):
        z = jax.random.normal(self.make_rng("noise"), y.shape[:-1] + (1,))
        scale = self.param("noise_scale", nn.initializers.ones, ())
        h = nn.Conv(3, (3, 3))(jnp.concatenate([y, scale * z], axis=-1))
        q = jnp.mean(qtables.reshape(qtables.shape[0], -1), axis=-1)[:, None, None, None]
        return nn.sigmoid(h + q / 100.0)


@pytest.fixture(scope="module")
def toy():
    model = _ToyGenerator()
    rng = _rng(8)
    y = jnp.asarray(rng.uniform(size=(3, 8, 8, 3)), jnp.float32)
    qtables = jnp.asarray(rng.integers(1, 100, size=(3, 2, 8, 8)), jnp.int32)
    params = model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, y, qtables)
    apply_fn = lambda p, y, q, k: model.apply(p, y, q, rngs={"noise": k})
    return apply_fn, params, y, qtables


def test_draw_samples_equals_python_loop(toy):
    apply_fn, params, y, qtables = toy
    key = jax.random.key(42)
    samples = losses.draw_samples(apply_fn, params, y, qtables, key, 16)
    assert samples.shape == (16, 3, 8, 8, 3)
    loop = [apply_fn(params, y, qtables, k) for k in jax.random.split(key, 16)]
    np.testing.assert_allclose(samples, np.stack(loop), rtol=1e-5, atol=1e-6)
    assert np.std(np.asarray(samples), axis=0).mean() > 1e-3  # fresh noise per sample


def test_first_and_second_moment_equal_loop_references(toy):
    apply_fn, params, y, qtables = toy
    rng = _rng(9)
    x = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    x_mmse = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    key = jax.random.key(3)
    samples = losses.draw_samples(apply_fn, params, y, qtables, key, 16)
    loop = np.stack([apply_fn(params, y, qtables, k) for k in jax.random.split(key, 16)], 0)
    loop = loop.astype(np.float64)
    mean = sum(loop) / 16
    fm_ref = np.mean((mean - x) ** 2)
    var_ref = sum((s - mean) ** 2 for s in loop) / 16  # biased, Eq. 15
    sm_ref = np.mean(np.abs(var_ref - (x - x_mmse) ** 2))
    np.testing.assert_allclose(losses.first_moment_penalty(x, samples), fm_ref, rtol=1e-4)
    np.testing.assert_allclose(losses.second_moment_penalty(x, samples, x_mmse), sm_ref, 1e-4)


def test_moment_closed_forms():
    x = jnp.full((1, 2, 2, 3), 0.5)
    samples = jnp.stack([jnp.full_like(x, 0.2), jnp.full_like(x, 0.6)])  # mean .4, var .04
    np.testing.assert_allclose(losses.first_moment_penalty(x, samples), 0.01, rtol=1e-5)
    x_mmse = jnp.full_like(x, 0.2)  # (x - x_mmse)^2 = 0.09
    np.testing.assert_allclose(losses.second_moment_penalty(x, samples, x_mmse), 0.05, rtol=1e-5)


def test_moment_penalty_gradients_are_finite(toy):
    apply_fn, params, y, qtables = toy
    x = jnp.asarray(_rng(10).uniform(size=y.shape), jnp.float32)

    def loss(p):
        s = losses.draw_samples(apply_fn, p, y, qtables, jax.random.key(5), 16)
        return losses.first_moment_penalty(x, s) + losses.second_moment_penalty(x, s, y)

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves)


def test_mse_loss():
    a, b = _rng(11).uniform(size=(2, 2, 4, 4, 3))
    np.testing.assert_allclose(losses.mse_loss(a, b), np.mean((a - b) ** 2), rtol=1e-6)


# ----------------------------------------------------------------------------- perceptual


@pytest.fixture(scope="module")
def vgg_params():
    shapes = jax.eval_shape(vgg.VGG19Features().init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    rng, params = _rng(12), {}
    for name, leaves in shapes["params"].items():
        fan_in = np.prod(leaves["kernel"].shape[:3])
        kernel = rng.normal(0, np.sqrt(2 / fan_in), leaves["kernel"].shape).astype(np.float32)
        params[name] = {
            "kernel": kernel,
            "bias": rng.normal(0, 0.1, leaves["bias"].shape).astype(np.float32),
        }
    return params


def test_perceptual_loss_weighted_l1_of_features(vgg_params):
    rng = _rng(13)
    x, x_hat = rng.uniform(size=(2, 2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.perceptual_loss(vgg_params, x, x), 0.0, atol=1e-7)
    feats = [
        vgg.VGG19Features().apply({"params": vgg_params}, im) for im in (x, x_hat)
    ]  # independent of the loss's layer truncation
    ref = sum(
        w * np.mean(np.abs(np.asarray(feats[1][k]) - np.asarray(feats[0][k])))
        for k, w in {
            "conv1_2": 0.1,
            "conv2_2": 0.1,
            "conv3_4": 1,
            "conv4_4": 1,
            "conv5_4": 1,
        }.items()
    )
    np.testing.assert_allclose(losses.perceptual_loss(vgg_params, x, x_hat), ref, rtol=1e-5)
    only = losses.perceptual_loss(vgg_params, x, x_hat, layer_weights={"conv2_2": 2.0})
    np.testing.assert_allclose(
        only, 2 * np.mean(np.abs(feats[1]["conv2_2"] - feats[0]["conv2_2"])), 1e-5
    )
    with pytest.raises(ValueError, match="relu1_1"):
        losses.perceptual_loss(vgg_params, x, x_hat, layer_weights={"relu1_1": 1.0})


# Parity with BasicSR's PerceptualLoss itself (on torchvision's VGG19): test_parity_golden.py.


def test_perceptual_loss_gradient_finite_and_target_constant(vgg_params):
    rng = _rng(15)
    x, x_hat = (jnp.asarray(a, jnp.float32) for a in rng.uniform(size=(2, 1, 16, 16, 3)))
    g_hat, g_x = jax.grad(lambda a, b: losses.perceptual_loss(vgg_params, b, a), (0, 1))(x_hat, x)
    assert np.all(np.isfinite(g_hat)) and np.any(g_hat != 0)
    np.testing.assert_array_equal(g_x, 0.0)

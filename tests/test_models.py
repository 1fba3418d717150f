"""Tests of jpeg_jax.models: generator, critic, stackings, BasicSR converter (tiny models)."""

from __future__ import annotations

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import traverse_util
from model_helpers import random_params
from train_helpers import tiny_config

from jpeg_jax import export, jpeg, losses, sampling, train_state
from jpeg_jax.models import Critic, Generator, convert
from jpeg_jax.models.layers import noise_key, pixel_unshuffle

TINY = dict(num_feat=8, num_block=2, num_grow_ch=4)
TINY_CRITIC = dict(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _rngs(seed: int = 0) -> dict:
    return {"params": jax.random.key(seed), "noise": jax.random.key(seed + 1)}


def _qtables(batch: int, scale: float = 1.0) -> jnp.ndarray:
    base = np.arange(1, 129, dtype=np.float32).reshape(2, 8, 8)
    return jnp.asarray(np.clip(np.round(base * scale), 1, 255), jnp.int32)[None].repeat(batch, 0)


def _images(shape, seed=0) -> jnp.ndarray:
    return jax.random.uniform(jax.random.key(seed), shape)


@functools.partial(jax.jit, static_argnums=0, static_argnames="deterministic")
def _run(gen, params, y, qtables=None, key=None, *, deterministic=False):
    """Jitted ``gen.apply`` (eager flax dispatches hundreds of tiny ops)."""
    rngs = None if key is None else {"noise": key}
    return gen.apply({"params": params}, y, qtables, rngs=rngs, deterministic=deterministic)


@functools.partial(jax.jit, static_argnums=0)
def _critic(critic, variables, x, y, qtables=None):
    return critic.apply(variables, x, y, qtables)


@functools.cache
def _tiny_params(**kw):
    y = jnp.zeros((1, 16, 16, 3))
    return jax.jit(Generator(**TINY, **kw).init)(_rngs(), y, _qtables(1))["params"]


def _paper_count(**kw) -> int:
    y = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    shapes = jax.eval_shape(lambda y: Generator(**kw).init(_rngs(), y, _qtables(1)), y)
    return _count(shapes["params"])


def _rrdbnet_count(in_ch, nf=64, nb=23, gc=32, noise=0) -> int:
    """Closed form: conv(cin, cout) = 9*cin*cout + cout; RDB convs see nf + k*gc (+ noise)."""
    conv = lambda cin, cout: 9 * cin * cout + cout
    rdb = sum(conv(nf + k * gc + noise, gc if k < 4 else nf) for k in range(5))
    return conv(in_ch, nf) + nb * 3 * rdb + 3 * conv(nf, nf) + conv(nf, 3)  # body, up1, hr


def test_param_count_paper_size_matches_basicsr_minus_conv_up2():
    assert _rrdbnet_count(12) == 16_666_243
    assert _paper_count(noise=False, film=False) == 16_666_243
    # Noise: one more input channel per RDB conv and for conv_up1, plus one scalar per injection.
    injections = 23 * 3 * 5 + 1
    assert _rrdbnet_count(12, noise=1) == 16_785_475
    assert _paper_count(noise=True) == 16_785_475 + 9 * 64 + injections


def test_param_count_film_adds_embedding_and_projections():
    d, nf = 128, 64
    film = (128 * d + d + d * d + d) + 24 * (d * 2 * nf + 2 * nf)  # MLP + 24 zero-init heads
    assert _paper_count(noise=False, film=True) == 16_666_243 + film


@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (130, 70)])
@pytest.mark.parametrize("batch", [1, 5])
def test_generator_odd_shapes_and_edge_padding(hw, batch):
    gen, params = Generator(**TINY), _tiny_params()
    y = _images((batch, *hw, 3))
    out = _run(gen, params, y, deterministic=True)
    assert out.shape == (batch, *hw, 3) and out.dtype == jnp.float32
    # Independent reference: numpy edge-pad to a multiple of 16, run, crop.
    ph, pw = -hw[0] % 16, -hw[1] % 16
    padded = jnp.asarray(np.pad(np.asarray(y), ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"))
    ref = _run(gen, params, padded, deterministic=True)[:, : hw[0], : hw[1]]
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # Samples of a batch are independent of each other.
    one = _run(gen, params, y[-1:], deterministic=True)
    np.testing.assert_allclose(out[-1:], one, atol=1e-5)


def test_pixel_unshuffle_matches_pytorch_channel_order():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    out = np.asarray(pixel_unshuffle(jnp.asarray(x), 2))
    for c, i, j in np.ndindex(3, 2, 2):
        np.testing.assert_array_equal(out[..., c * 4 + i * 2 + j], x[:, i::2, j::2, c])


def test_noise_determinism():
    gen, params = Generator(**TINY), _tiny_params()
    y = _images((2, 32, 32, 3))
    run = lambda k: _run(gen, params, y, key=jax.random.key(k))
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-4
    mean_path = _run(gen, params, y, deterministic=True)  # no rng needed
    assert float(jnp.max(jnp.abs(a - mean_path))) > 1e-4
    # Noise-free model: the noise rng is irrelevant.
    gen0 = Generator(**TINY, noise=False)
    p0 = _tiny_params(noise=False)
    np.testing.assert_array_equal(
        _run(gen0, p0, y, key=jax.random.key(1)),
        _run(gen0, p0, y, deterministic=True),
    )


def test_film_identity_at_init_then_qtables_matter_after_training():
    gen, params = Generator(**TINY, film=True), _tiny_params(film=True)
    plain = {k: v for k, v in params.items() if not k.startswith(("film_", "qtable_"))}
    y = _images((2, 32, 32, 3))
    q_lo, q_hi = _qtables(2, 0.2), _qtables(2, 1.5)
    with_film = _run(gen, params, y, q_lo, deterministic=True)
    without = _run(Generator(**TINY), plain, y, deterministic=True)
    # Equal up to float32 round-off: XLA may fuse the two programs' arithmetic differently
    # (measured 2e-8 with the tests' XLA:CPU flags, tests/conftest.py; outputs ~1e-2).
    np.testing.assert_allclose(with_film, without, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="qtables"):
        _run(gen, params, y, deterministic=True)

    # Toy objective: the target brightness depends on the tables only.
    def loss(p):
        lo = gen.apply({"params": p}, y, q_lo, deterministic=True)
        hi = gen.apply({"params": p}, y, q_hi, deterministic=True)
        return jnp.mean((lo - 0.2) ** 2) + jnp.mean((hi - 0.8) ** 2)

    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(5):
        params, state = step(params, state)
    lo = _run(gen, params, y, q_lo, deterministic=True)
    hi = _run(gen, params, y, q_hi, deterministic=True)
    assert float(jnp.mean(hi - lo)) > 1e-2


def test_bf16_compute_is_finite_and_close_to_fp32():
    params = _tiny_params()
    y = _images((2, 32, 32, 3))
    ref = _run(Generator(**TINY), params, y, deterministic=True)
    out = _run(Generator(**TINY, dtype=jnp.bfloat16), params, y, deterministic=True)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    scale = float(jnp.max(jnp.abs(ref)))
    assert float(jnp.max(jnp.abs(out - ref))) < 2e-2 * max(scale, 1.0)
    assert float(jnp.max(jnp.abs(out - ref))) > 0  # bf16 really ran
    bf16_params = jax.eval_shape(Generator(**TINY, dtype=jnp.bfloat16).init, _rngs(), y, None)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16_params))


@pytest.mark.parametrize(
    "variant", [dict(remat=True), dict(scan=True), dict(remat=True, scan=True)]
)
def test_remat_and_scan_same_output_and_grads(variant):
    """Every stacking and remat computes the unrolled module's function and gradients (the
    scanned one on the same params, stacked)."""
    params = _tiny_params(film=True)
    y, q = _images((2, 32, 32, 3)), _qtables(2)

    def loss(p, kw):
        gen = Generator(**TINY, film=True, **dict(kw))
        out = gen.apply({"params": p}, y, q, rngs={"noise": jax.random.key(7)})
        return jnp.mean(out**2), out

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, o0), g0 = grad(params, ())
    stacked = convert.to_stacking(params, scan=variant.get("scan", False))
    (_, o1), g1 = grad(stacked, tuple(variant.items()))
    np.testing.assert_allclose(o0, o1, atol=1e-6)
    g1 = convert.unstack_blocks(g1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g0, g1)


def test_scanned_backward_uses_only_canonical_convolutions():
    """With ``conv_impl="eigen"`` every convolution of the compiled scanned forward+backward is
    NHWC/HWIO, the form XLA:CPU runs with Eigen (it canonicalises gradient convolutions only in
    the entry computation, not in the scan's while body)."""
    gen = Generator(**TINY, scan=True, remat=True, conv_impl="eigen")
    params = convert.stack_blocks(_tiny_params())
    y = _images((2, 32, 32, 3))
    loss = lambda p, k: jnp.mean(gen.apply({"params": p}, y, None, rngs={"noise": k}) ** 2)
    hlo = jax.jit(jax.grad(loss)).lower(params, jax.random.key(0)).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=([^ ,]+)", hlo)
    assert len(labels) >= 3 * 15  # one scanned body of 3 RDBs x 5 convs: recompute, d/dx, d/dk
    assert set(labels) == {"b01f_01io->b01f"}, sorted(set(labels))


@pytest.mark.slow
@pytest.mark.parametrize("conv_impl", ["xla", "eigen"])
def test_split_convs_same_output_and_grads(conv_impl):
    params = _tiny_params()
    y = _images((2, 32, 32, 3))
    gen = lambda split: Generator(**TINY, split_convs=split, conv_impl=conv_impl)
    run = lambda split: _run(gen(split), params, y, key=jax.random.key(5))
    np.testing.assert_allclose(run(True), run(False), atol=1e-5)

    def grads(split):
        gen = Generator(**TINY, split_convs=split, conv_impl=conv_impl)
        loss = lambda p: jnp.mean(gen.apply({"params": p}, y, None, rngs={"noise": key}) ** 2)
        return jax.jit(jax.grad(loss))(params)

    key = jax.random.key(6)
    for a, b in zip(jax.tree.leaves(grads(True)), jax.tree.leaves(grads(False)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("hw", [(128, 128), (64, 96), (32, 32)])
def test_critic_shapes(hw):
    critic = Critic(**TINY_CRITIC)
    x, y = _images((3, *hw, 3), 1), _images((3, *hw, 3), 2)
    params = jax.jit(critic.init)(jax.random.key(0), x, y)
    logits = _critic(critic, params, x, y)
    assert logits.shape == (3,) and logits.dtype == jnp.float32


def test_critic_paper_size_and_invalid_size():
    x = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
    out = jax.eval_shape(lambda x: Critic().init_with_output(jax.random.key(0), x, x), x)
    assert out[0].shape == (2,)
    assert _count(out[1]) == 21_285_185
    with pytest.raises(ValueError, match="multiples of 32"):
        Critic(**TINY_CRITIC).init(
            jax.random.key(0), jnp.zeros((1, 48, 48, 3)), jnp.zeros((1, 48, 48, 3))
        )


def test_critic_has_no_normalisation_and_is_per_sample():
    critic = Critic(**TINY_CRITIC)
    x, y = _images((4, 64, 64, 3), 1), _images((4, 64, 64, 3), 2)
    variables = jax.jit(critic.init)(jax.random.key(0), x, y)
    assert set(variables) == {"params"}  # no batch_stats
    names = {"/".join(k) for k in traverse_util.flatten_dict(variables["params"])}
    assert all(n.endswith(("kernel", "bias")) for n in names), names  # no norm scales
    logits = _critic(critic, variables, x, y)
    single = jnp.concatenate(
        [_critic(critic, variables, x[i : i + 1], y[i : i + 1]) for i in range(4)]
    )
    np.testing.assert_allclose(logits, single, rtol=1e-5, atol=1e-6)
    # It does look at y.
    assert float(jnp.max(jnp.abs(_critic(critic, variables, x, y[::-1]) - logits))) > 0


def _sharp_and_blurred_patches(split, count, seed, side=32):
    """``count`` random patches of the embedded photos of ``split`` (half-size: about the demo's
    scale), their Gaussian-blurred versions (sigma 0.6 px: a mildly smooth, MMSE-like
    restoration) and their JPEG decodes at quality 10."""
    import io

    import scipy.ndimage
    from jpeg_helpers import pillow_jpeg
    from PIL import Image

    from jpeg_jax.datasets import embedded

    rng = np.random.default_rng(seed)
    photos = [embedded.load_photo(n)[::2, ::2] for n in embedded.split_names(split)]
    x = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        i, j = (rng.integers(d - side) for d in photo.shape[:2])
        x.append(photo[i : i + side, j : j + side])
    x = np.stack(x)
    blurred = scipy.ndimage.gaussian_filter(x.astype(np.float32), sigma=(0, 0.6, 0.6, 0))
    y = [
        np.asarray(Image.open(io.BytesIO(pillow_jpeg(patch, 10, "4:2:0"))).convert("RGB"))
        for patch in x
    ]
    return x / np.float32(255), blurred / np.float32(255), np.stack(y) / np.float32(255)


def test_critic_learns_to_tell_sharp_from_blurred():
    """The critic's job in the demo and the paper: tell the original from a smooth restoration
    given the JPEG. Trained 100 steps with its loss and R1 (weight 1, as configured) on patches
    of the training photos, it must rank held-out originals above their blurred versions. A stem
    that averages its linear responses (no activation before a 2x2 average pool) stays near chance
    here (0.5-0.6 after 300 steps; the current stem: 0.99 after 50)."""
    critic = Critic(**TINY_CRITIC)
    train = _sharp_and_blurred_patches("train", 512, seed=0)
    test = _sharp_and_blurred_patches("test", 128, seed=1)
    params = critic.init(jax.random.key(0), train[0][:1], train[2][:1])["params"]
    tx = optax.adam(2e-3, b1=0.9, b2=0.99)

    @jax.jit
    def step(params, opt_state, x, fake, y):
        def loss_fn(p):
            fn = lambda images, cond: critic.apply({"params": p}, images, cond)  # noqa: E731
            r1, real = losses.r1_penalty_and_logits(fn, x, y, weight=1.0)
            return losses.critic_loss(real, fn(fake, y)) + r1

        updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    rng = np.random.default_rng(2)
    for _ in range(100):
        idx = rng.choice(len(train[0]), 16, replace=False)
        params, opt_state = step(params, opt_state, *(a[idx] for a in train))
    x, fake, y = test
    real = critic.apply({"params": params}, x, y)
    blurred = critic.apply({"params": params}, fake, y)
    pairwise = float(jnp.mean(real > blurred))  # per held-out patch: original vs its blur
    assert pairwise >= 0.9, pairwise


def test_critic_qtable_projection():
    critic = Critic(**TINY_CRITIC, film=True)
    x, y = _images((2, 32, 32, 3), 1), _images((2, 32, 32, 3), 2)
    params = critic.init(jax.random.key(0), x, y, _qtables(2))
    a = _critic(critic, params, x, y, _qtables(2, 0.2))
    b = _critic(critic, params, x, y, _qtables(2, 1.5))
    assert a.shape == (2,) and float(jnp.max(jnp.abs(a - b))) > 0


def _fake_state_dict(params) -> dict:
    """Our noise-free params written the BasicSR way (OIHW, dotted names) plus a conv_up2."""
    sd = {}
    for key, value in traverse_util.flatten_dict(params).items():
        *path, leaf = key
        name = ".".join(path).replace("body_", "body.")
        v = np.asarray(value)
        sd[f"{name}.{'weight' if leaf == 'kernel' else 'bias'}"] = (
            v.transpose(3, 2, 0, 1) if leaf == "kernel" else v
        )
    sd["conv_up2.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    return sd


def test_converter_roundtrip_and_zero_noise_weights():
    base = jax.tree.map(lambda x: x + 0.01, _tiny_params(noise=False))  # non-zero biases too
    sd = _fake_state_dict(base)
    converted = convert.params_from_basicsr(sd)
    jax.tree.map(np.testing.assert_array_equal, converted, jax.tree.map(np.asarray, base))
    y = _images((1, 32, 32, 3))
    ref = _run(Generator(**TINY, noise=False), base, y)
    for scan in (False, True):  # the template's stacking decides the result's
        template = convert.to_stacking(_tiny_params(film=True), scan=scan)
        noisy = convert.params_from_basicsr(sd, noise=True, template=template)
        assert convert.is_stacked(noisy) == scan
        gen = Generator(**TINY, film=True, scan=scan)
        out = _run(gen, noisy, y, _qtables(1), jax.random.key(3))
        np.testing.assert_allclose(out, ref, atol=1e-6)  # zero noise weights + identity FiLM
    stacked = convert.params_from_basicsr(sd, scan=True)
    jax.tree.map(np.testing.assert_array_equal, convert.unstack_blocks(stacked), converted)
    with pytest.raises(ValueError, match="template"):
        convert.params_from_basicsr(sd, template=_tiny_params())  # kernels miss noise channel


def test_stack_and_unstack_blocks_are_inverse_and_keep_block_order():
    params = jax.tree.map(np.asarray, _tiny_params(film=True))
    stacked = convert.stack_blocks(params)
    assert set(stacked) - set(params) == {"body"} and not any(
        k.startswith("body_") for k in stacked
    )
    assert not any(k.startswith("film_body_") for k in stacked)
    for i in range(TINY["num_block"]):
        np.testing.assert_array_equal(
            stacked["body"]["rdb2"]["conv3"]["kernel"][i],
            params[f"body_{i}"]["rdb2"]["conv3"]["kernel"],
        )
        np.testing.assert_array_equal(
            stacked["body"]["film"]["proj"]["kernel"][i], params[f"film_body_{i}"]["proj"]["kernel"]
        )
    jax.tree.map(np.testing.assert_array_equal, convert.unstack_blocks(stacked), params)
    assert convert.to_stacking(stacked, scan=True) == stacked  # already in that layout
    # The stacked tree is exactly what Generator(scan=True) initialises.
    shapes = jax.eval_shape(
        lambda: Generator(**TINY, film=True, scan=True).init(
            _rngs(), jnp.zeros((1, 16, 16, 3)), _qtables(1)
        )
    )["params"]
    assert jax.tree.structure(shapes) == jax.tree.structure(stacked)
    jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), shapes, stacked)


DATA = pathlib.Path(__file__).parent / "data"


def test_export_written_before_the_scan_change_gives_the_same_samples():
    """``tests/data/export_v1`` was written by the code of commit 0126ba9 (per-block params,
    the hand-made scan) and ``export_v1_golden.npz`` holds what that code returned for
    ``export_v1_input.jpg``: 3 samples from ``sampling.restore(export, jpeg, 3, key(42))``, and
    the unrolled module's raw output with noise key 7 and without noise."""
    golden = np.load(DATA / "export_v1_golden.npz")
    f = jpeg.read_jpeg((DATA / "export_v1_input.jpg").read_bytes())
    samples = sampling.restore(str(DATA / "export_v1"), f, 3, jax.random.key(42)).samples
    np.testing.assert_allclose(samples, golden["samples"], atol=1e-5)
    loaded = export.load(DATA / "export_v1")
    y = jnp.asarray(f.pixels / 255.0, jnp.float32)[None]
    for scan in (False, True):
        gen = loaded.build(split_convs=False, scan=scan)
        params = convert.to_stacking(loaded.params, scan=scan)
        raw = _run(gen, params, y, f.qtables[None], jax.random.key(7))
        np.testing.assert_allclose(raw, golden["raw_key7"], atol=1e-5)
        mean_path = _run(gen, params, y, f.qtables[None], deterministic=True)
        np.testing.assert_allclose(mean_path, golden["deterministic"], atol=1e-5)
    assert np.abs(golden["raw_key7"] - golden["deterministic"]).max() > 0.1  # noise matters


def test_parity_with_basicsr_rrdbnet():
    torch = pytest.importorskip("torch", reason="parity needs torch (pip install torch)")
    try:
        arch = convert.load_basicsr_arch()
    except ImportError as e:
        pytest.skip(f"parity needs basicsr sources (pip install basicsr==1.4.2 --no-deps): {e}")
    nf, nb, gc = 32, 3, 16
    torch.manual_seed(0)
    net = arch.RRDBNet(
        num_in_ch=3, num_out_ch=3, scale=2, num_feat=nf, num_block=nb, num_grow_ch=gc
    )
    with torch.no_grad():
        for p in net.parameters():  # random weights and biases, not BasicSR's zero biases
            p.normal_(0.0, 0.05)
    x = torch.rand(2, 3, 48, 32)
    with torch.no_grad():  # BasicSR's own modules, composed with ONE x2 upsampling as ours is
        feat = net.conv_first(arch.pixel_unshuffle(x, scale=2))
        feat = feat + net.conv_body(net.body(feat))
        up = net.lrelu(net.conv_up1(arch.F.interpolate(feat, scale_factor=2, mode="nearest")))
        ref = net.conv_last(net.lrelu(net.conv_hr(up))).permute(0, 2, 3, 1).numpy()
    for scan in (False, True):
        params = convert.params_from_basicsr(net.state_dict(), scan=scan)
        gen = Generator(num_feat=nf, num_block=nb, num_grow_ch=gc, noise=False, scan=scan)
        out = _run(gen, params, jnp.asarray(x.permute(0, 2, 3, 1).numpy()))
        assert float(jnp.max(jnp.abs(out - ref))) <= 1e-4
    assert float(np.max(np.abs(ref))) > 0.1  # a non-trivial comparison
    # BasicSR's full parameter count minus conv_up2 equals ours at this size.
    n_torch = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("conv_up2"))
    assert _count(params) == n_torch


def _grad_temp_bytes(gen: Generator, batch: int, size: int) -> int:
    """XLA's temp allocation of a compiled (never run) generator forward+backward."""
    img = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    params = jax.eval_shape(lambda y: gen.init(_rngs(), y, None), img)["params"]
    loss = lambda p, y, k: jnp.mean(gen.apply({"params": p}, y, None, rngs={"noise": k}) ** 2)
    key = jax.eval_shape(lambda: jax.random.key(0))
    compiled = jax.jit(jax.grad(loss)).lower(params, img, key).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
@pytest.mark.parametrize("conv_impl", ["xla", "eigen"])
def test_remat_reduces_compiled_memory(conv_impl):
    """Both convolution implementations (the accelerator's and the CPU's) stay under the same
    bounds. Activations dominate at this size."""
    kw = dict(num_feat=16, num_block=8, num_grow_ch=8, conv_impl=conv_impl)
    full = _grad_temp_bytes(Generator(**kw), 8, 64)
    assert _grad_temp_bytes(Generator(**kw, remat=True), 8, 64) < 0.6 * full
    assert _grad_temp_bytes(Generator(**kw, remat=True, scan=True), 8, 64) < 0.4 * full


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_paper_size_gan_step_fits_in_8gib_with_scan_remat(backend):
    """Paper setting: G + D step, batch 32 at 128x128, compiled only (~40 s each on 2 cores),
    with the implementation choices made for CPU and for GPU/TPU."""
    import importlib.util

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "models.py"
    spec = importlib.util.spec_from_file_location("benchmark_models", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mem = bench.memory_analysis({"scan": True, "remat": True}, batch=32, backend=backend)
    assert mem["peak_estimate"] < 8.0, mem


def test_warm_start_and_sm_reference_load_exports_of_either_stacking(tmp_path):
    """An unrolled export initialises a scanned GAN (and is its SM reference), and back."""
    for export_scan in (False, True):
        config = tiny_config()
        config.model.generator.scan = export_scan
        kwargs = train_state.generator_kwargs(config)
        params = random_params(Generator(**kwargs), seed=3)  # in the export's stacking
        path = export.save(tmp_path / f"export_{export_scan}", kwargs, params)
        config.model.generator.scan = not export_scan
        config.init_from_export = str(path)
        config.loss.sm_weight, config.loss.sm_mmse_export = 1.0, str(path)
        models = train_state.make_models(config)
        frozen = train_state.load_frozen(config)
        state = train_state.init_state(
            config, models, train_state.make_optimizers(config), jax.random.key(0), frozen
        )
        want = convert.to_stacking(params, scan=not export_scan)
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.g_params), want)
        jax.tree.map(np.testing.assert_array_equal, frozen["mmse"], want)


def test_noise_key_is_flaxs_make_rng_of_the_submodule():
    class Inner(nn.Module):
        @nn.compact
        def __call__(self):
            return self.make_rng("noise")

    class Outer(nn.Module):
        @nn.compact
        def __call__(self):
            return Inner(name="conv3")()

    class Root(nn.Module):
        @nn.compact
        def __call__(self):
            return Outer(name="rdb2")()

    key = jax.random.key(11)
    got = Root().apply({}, rngs={"noise": key})
    np.testing.assert_array_equal(
        jax.random.key_data(got), jax.random.key_data(noise_key(key, "rdb2", "conv3"))
    )
    other = noise_key(key, "rdb2", "conv4")
    assert not np.array_equal(jax.random.key_data(got), jax.random.key_data(other))

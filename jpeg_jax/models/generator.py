"""The paper's RRDB generator (appendix A.1, Figure 5): Real-ESRGAN's RRDBNet at 1/2 resolution,
with noise injection (posterior sampling) and optional FiLM conditioning on the JPEG's tables.

Parameter names follow BasicSR's ``RRDBNet`` (``conv_first``, ``body_<i>/rdb<j>/conv<k>``,
``conv_body``, ``conv_up1``, ``conv_hr``, ``conv_last``) so that
:func:`jpeg_jax.models.convert.params_from_basicsr` is a plain renaming + transposition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jpeg_jax.models import ops
from jpeg_jax.models.layers import (
    DenseConv,
    FiLM,
    QTableEmbedding,
    kaiming_scaled_init,
    leaky_relu,
    noise_key,
    pad_to_multiple,
    pixel_unshuffle,
    upsample_nearest,
)

Array = jax.Array
Dtype = Any

_RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling, in every RDB and RRDB.


class ResidualDenseBlock(nn.Module):
    """RDB: 5 densely connected 3x3 convs (growth ``num_grow_ch``), LeakyReLU 0.2, x + 0.2 * out.

    With ``noise`` every conv sees one extra fresh N(0, 1) channel (times a learnable scalar).
    """

    num_feat: int = 64
    num_grow_ch: int = 32
    noise: bool = True
    split: bool = False
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, key: Array | None = None) -> Array:
        """x: (B, H, W, num_feat); key: the enclosing RRDB's noise key (None: no noise)."""
        feats = [x]
        for k in range(1, 6):
            conv = DenseConv(
                self.num_grow_ch if k < 5 else self.num_feat,
                noise=self.noise,
                split=self.split,
                conv_impl=self.conv_impl,
                kernel_init=kaiming_scaled_init(0.1),  # BasicSR's RDB init
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv{k}",
            )
            conv_key = None if key is None else noise_key(key, self.name, f"conv{k}")
            out = conv(feats, deterministic=key is None, key=conv_key)
            if k < 5:
                feats.append(leaky_relu(out))
        return x + _RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a 0.2-scaled long skip [then FiLM].

    ``film`` puts the block's FiLM inside it (the scanned trunk's step); the unrolled trunk
    keeps its FiLM modules beside the blocks (``film_body_<i>``, BasicSR-compatible names).
    """

    num_feat: int = 64
    num_grow_ch: int = 32
    noise: bool = True
    split: bool = False
    conv_impl: str = "xla"
    film: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, key: Array | None = None, emb: Array | None = None) -> Array:
        """x: (B, H, W, num_feat); key: this block's noise key (None: no noise); emb: (B, D)
        quantization-table embedding (with ``film``). Returns (B, H, W, num_feat)."""
        out = x
        for j in range(1, 4):
            out = ResidualDenseBlock(
                self.num_feat,
                self.num_grow_ch,
                noise=self.noise,
                split=self.split,
                conv_impl=self.conv_impl,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"rdb{j}",
            )(out, key)
        out = x + _RESIDUAL_SCALE * out
        if self.film:
            out = FiLM(self.dtype, self.param_dtype, name="film")(out, emb)
        return out


class _NoiseKey(nn.Module):
    """Parameter-free stand-in for an unrolled block: its "noise" key, as that block drew it."""

    @nn.compact
    def __call__(self) -> Array:
        return self.make_rng("noise")


def _remat_in_order(definition: RRDB) -> Callable:
    """``block(x, key)`` rematerialised by :func:`jpeg_jax.models.ops.in_order_backward`, lifted
    to Flax with ``nn.custom_vjp``; ``definition`` is the unbound block it recomputes."""

    def run(block, x, key):
        return block(x, key)

    def forward(block, x, key):
        return block(x, key), (block.variables["params"], x, key)

    def backward(residuals, ct):
        apply = lambda p, x, key: definition.apply({"params": p}, x, key)  # noqa: E731
        d_params, d_x, _ = ops.in_order_backward(apply, residuals, ct)
        return {"params": d_params}, d_x, None

    return nn.custom_vjp(run, forward_fn=forward, backward_fn=backward)


def _scan_step(block: RRDB, x: Array, key: Array | None, emb: Array | None):
    return block(x, key, emb), None


class Generator(nn.Module):
    """Stochastic JPEG decoder G(y, z, qtables) -> x_hat.

    Pipeline: edge-pad to a multiple of ``pad_multiple`` (16, the 4:2:0 macroblock) -> pixel
    unshuffle x2 (3 -> 12 channels, PyTorch channel order) -> ``conv_first`` -> ``num_block``
    RRDBs (each followed by FiLM when ``film``) -> ``conv_body`` + long skip -> nearest x2 ->
    [noise] ``conv_up1`` -> LeakyReLU [-> FiLM] -> ``conv_hr`` -> LeakyReLU -> ``conv_last`` ->
    crop back to (H, W).

    The output is **not clipped**: during training every loss (adversarial, consistency, moments)
    gets gradients everywhere, including where the prediction overshoots [0, 1]. Callers that
    need an image (sampling, metrics, export) clip with ``jnp.clip(x_hat, 0, 1)``.

    Noise: block i draws from the key ``make_rng("noise")`` gives in scope ``body_<i>``, and
    ``conv_up1`` from its own scope, whatever the stacking: the unrolled and the scanned trunk
    (and exports written before the scan existed) give the same samples for the same rng.

    The speed and memory attributes (``conv_impl``, ``split_convs``, ``scan``, ``remat``) never
    change the function computed (up to float rounding); they are chosen per backend by
    :func:`jpeg_jax.platform.resolve_generator`, and the defaults are the variant GPUs and TPUs
    run. ``scan`` changes the parameter layout (:mod:`jpeg_jax.models.convert` converts).

    Attributes:
      num_feat: trunk width (64 in the paper).
      num_block: number of RRDBs (23).
      num_grow_ch: RDB growth channels (32).
      noise: inject a fresh N(0, 1) channel (times a learnable scalar initialised to 1) before
        every RDB conv and before the upsampling conv. Noise comes from the "noise" rng stream.
      film: modulate the output of every RRDB and of the upsampling block with (gamma, beta)
        predicted from the quantization tables (identity at initialisation).
      film_dim: width of the quantization-table embedding MLP.
      pad_multiple: inputs are edge-padded to a multiple of this.
      conv_impl: ``"xla"`` (XLA's own convolution gradients) or ``"eigen"`` (the custom-VJP
        NHWC/HWIO gradients XLA:CPU needs, :mod:`jpeg_jax.models.ops`).
      split_convs: compute each dense conv as a sum of per-input convs instead of
        concatenating its inputs.
      remat: recompute each RRDB in the backward pass, storing only the RRDB inputs. Scanned:
        ``nn.remat`` of the scan step. Unrolled: :func:`jpeg_jax.models.ops.in_order_backward`
        (``nn.remat`` of unrolled blocks saved no memory on XLA:CPU: benchmarks/RESULTS.md,
        "Remat").
      scan: run the RRDBs with ``nn.scan`` (one compiled block; with ``remat`` a memory bound
        independent of ``num_block``). Parameters are stacked: ``body`` (RRDB + ``film``) with
        a leading ``num_block`` axis instead of ``body_<i>`` and ``film_body_<i>``.
      input_skip: add the input ``y`` to the output, so the network learns the correction
        ``x - y`` and starts near the JPEG decode (not in the paper; for short trainings).
      dtype: computation dtype (e.g. bfloat16); the output is always float32.
      param_dtype: parameter dtype (keep float32).
    """

    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    noise: bool = True
    film: bool = False
    film_dim: int = 128
    pad_multiple: int = 16
    conv_impl: str = "xla"
    split_convs: bool = False
    remat: bool = False
    scan: bool = False
    input_skip: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _conv(self, features: int, name: str, noise: bool = False) -> DenseConv:
        return DenseConv(
            features,
            noise=noise,
            conv_impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _block(self, name: str | None, film: bool = False, **kw) -> RRDB:
        return RRDB(
            self.num_feat,
            self.num_grow_ch,
            noise=self.noise,
            split=self.split_convs,
            conv_impl=self.conv_impl,
            film=film,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
            **kw,
        )

    def _trunk(self, x: Array, emb: Array | None, deterministic: bool) -> Array:
        """The RRDB trunk (each block followed by FiLM when on), unrolled or scanned."""
        draw = self.noise and not deterministic
        if self.scan:
            keys = None
            if draw:
                keys = jnp.stack([_NoiseKey(name=f"body_{i}")() for i in range(self.num_block)])
            step = nn.remat(_scan_step, prevent_cse=False) if self.remat else _scan_step
            scan = nn.scan(
                step,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(0, nn.broadcast),
                length=self.num_block,
            )
            return scan(self._block("body", film=self.film), x, keys, emb)[0]
        remat = self.remat and not self.is_initializing()
        for i in range(self.num_block):
            block = self._block(f"body_{i}")
            key = block.make_rng("noise") if draw else None
            if remat:
                x = _remat_in_order(self._block(None, parent=None))(block, x, key)
            else:
                x = block(x, key)
            if self.film:
                x = FiLM(self.dtype, self.param_dtype, name=f"film_body_{i}")(x, emb)
        return x

    @nn.compact
    def __call__(
        self, y: Array, qtables: Array | None = None, *, deterministic: bool = False
    ) -> Array:
        """Restores a batch of decoded JPEGs.

        Args:
          y: (B, H, W, 3) float32 RGB in [0, 1], the decoded JPEG; any H, W >= 1.
          qtables: (B, 2, 8, 8) int32 luma/chroma quantization tables (natural order). Required
            when ``film``; ignored (may be None) otherwise.
          deterministic: feed zeros instead of noise (the "mean path"; needs no rng).

        Returns:
          (B, H, W, 3) float32 restoration, nominally in [0, 1] but not clipped (see above).
        """
        b, h, w, _ = y.shape
        emb = None
        if self.film:
            if qtables is None:
                raise ValueError("Generator(film=True) needs qtables of shape (B, 2, 8, 8).")
            emb = QTableEmbedding(self.film_dim, self.dtype, self.param_dtype, name="qtable_embed")(
                qtables
            )
        x = pad_to_multiple(y.astype(jnp.float32), self.pad_multiple)
        x = pixel_unshuffle(x, 2).astype(self.dtype)
        feat = self._conv(self.num_feat, "conv_first")([x])
        body = self._trunk(feat, emb, deterministic)
        feat = feat + self._conv(self.num_feat, "conv_body")([body])
        up = upsample_nearest(feat, 2)
        up = self._conv(self.num_feat, "conv_up1", noise=self.noise)(
            [up], deterministic=deterministic
        )
        up = leaky_relu(up)
        if self.film:
            up = FiLM(self.dtype, self.param_dtype, name="film_up")(up, emb)
        out = leaky_relu(self._conv(self.num_feat, "conv_hr")([up]))
        out = self._conv(3, "conv_last")([out])
        out = out[:, :h, :w, :].astype(jnp.float32).reshape(b, h, w, 3)
        return out + y.astype(jnp.float32) if self.input_skip else out


DTYPE_ATTRIBUTES = ("dtype", "param_dtype")


def resolve_dtypes(attributes: Mapping[str, Any], *, names: bool = False) -> dict[str, Any]:
    """``Generator`` attributes with :data:`DTYPE_ATTRIBUTES` as dtypes (from names such as
    ``"bfloat16"`` in configs and exports), or with ``names=True`` as names (for JSON).

    The one dtype-name parser of the package; other attributes are returned unchanged.
    """
    out = dict(attributes)
    for key in DTYPE_ATTRIBUTES:
        if out.get(key) is not None:
            out[key] = jnp.dtype(out[key]).name if names else jnp.dtype(out[key])
    return out


def abstract_params(generator: Generator) -> Any:
    """The generator's parameter tree as ``jax.ShapeDtypeStruct`` leaves, without computing
    anything (``jax.eval_shape`` of ``init`` on a 16x16 input): for checking loaded weights
    against a config, or drawing test weights of the right shapes."""
    return jax.eval_shape(
        lambda: generator.init(
            {"params": jax.random.key(0), "noise": jax.random.key(0)},
            jnp.zeros((1, 16, 16, 3)),
            jnp.ones((1, 2, 8, 8), jnp.int32),
        )
    )["params"]

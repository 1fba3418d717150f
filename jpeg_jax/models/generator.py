"""The paper's RRDB generator (appendix A.1, Figure 5): Real-ESRGAN's RRDBNet at 1/2 resolution,
with noise injection (posterior sampling) and optional FiLM conditioning on the JPEG's tables.

Parameter names follow BasicSR's ``RRDBNet`` (``conv_first``, ``body_<i>/rdb<j>/conv<k>``,
``conv_body``, ``conv_up1``, ``conv_hr``, ``conv_last``) so that
:func:`jpeg_jax.models.convert.params_from_basicsr` is a plain renaming + transposition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jpeg_jax.models.layers import (
    DenseConv,
    FiLM,
    QTableEmbedding,
    kaiming_scaled_init,
    leaky_relu,
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
    deterministic: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        feats = [x]
        for k in range(1, 6):
            conv = DenseConv(
                self.num_grow_ch if k < 5 else self.num_feat,
                noise=self.noise,
                split=self.split,
                kernel_init=kaiming_scaled_init(0.1),  # BasicSR's RDB init
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv{k}",
            )
            out = conv(feats, deterministic=self.deterministic)
            if k < 5:
                feats.append(leaky_relu(out))
        return x + _RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a 0.2-scaled long skip."""

    num_feat: int = 64
    num_grow_ch: int = 32
    noise: bool = True
    split: bool = False
    deterministic: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        out = x
        for j in range(1, 4):
            out = ResidualDenseBlock(
                self.num_feat,
                self.num_grow_ch,
                noise=self.noise,
                split=self.split,
                deterministic=self.deterministic,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"rdb{j}",
            )(out)
        return x + _RESIDUAL_SCALE * out


def checkpoint_in_order(fn: Callable[[Any, Array, Array], Array]) -> Callable:
    """Rematerialisation of ``fn(params, x, key)`` whose recomputation waits for its cotangent.

    ``jax.checkpoint`` (``nn.remat``) stores only the block input, but on XLA:CPU (jax 0.10) the
    recomputations of all blocks get scheduled right after the forward pass (the optimization
    barrier does not order them after the incoming cotangent there), so every activation is live
    again and memory is not reduced at all (measured: identical ``temp`` size). Here the saved
    input gets a real data dependency on the cotangent (``x + 0 * ct[0]``; XLA does not fold
    ``0 * y`` for floats), so block i is recomputed only once block i + 1's backward is done.
    """

    @jax.custom_vjp
    def run(params, x, key):
        return fn(params, x, key)

    def forward(params, x, key):
        return fn(params, x, key), (params, x, key)

    def backward(res, ct):
        params, x, key = res
        x = x + jnp.zeros((), x.dtype) * ct.reshape(-1)[0].astype(x.dtype)
        _, vjp = jax.vjp(lambda p, x: fn(p, x, key), params, x)
        return (*vjp(ct), None)

    run.defvjp(forward, backward)
    return run


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
      split_convs: compute each dense conv as a sum of per-input convs instead of concatenating
        (same parameters and results; a speed knob). ``None`` (default) splits on the CPU backend
        when ``num_grow_ch >= 32``, where it measured fastest for training (paper size, 2
        cores, ``benchmarks/models.py``, separate processes: forward+backward batch 4 0.66-0.92x
        the concatenation's time, forward batch 8 0.83-1.0x, forward batch 1 1.06-1.5x), and
        concatenates otherwise (the demo's 32/16-wide model: split 12 % slower; GPUs:
        unmeasured). For inference on CPU ``scan=True`` was the fastest of all; exports are
        sampled with it there (:func:`jpeg_jax.sampling.resolve_model`).
      remat: rematerialise each RRDB in the backward pass, storing only the RRDB inputs. In a
        loop this uses :func:`checkpoint_in_order` (``nn.remat`` saves nothing on XLA:CPU);
        with ``scan`` it is ``jax.checkpoint`` of the scan body. Noise is regenerated from the
        same key, so outputs and gradients are unchanged. Measured compiled memory, paper-size
        G + D step, batch 32 at 128^2 (``benchmarks/models.py --memory``): 24.9 GiB without,
        2.9 GiB with scan + remat; the looped in-order remat brought the generator step alone
        from ~24 to 8.1 GiB (its schedule is left to XLA).
      scan: run the RRDBs with ``jax.lax.scan`` over their stacked parameters (the parameter
        tree stays one entry per block): one compiled block, ~10x shorter compiles, and with
        ``remat`` a structurally bounded memory. Its backward used to be 25x slower than the
        loop's on XLA:CPU (gradient convolutions inside a while body missed XLA:CPU's Eigen
        path); :func:`jpeg_jax.models.layers.conv2d` now writes them in the canonical form, and
        scan + remat (which recomputes every block) costs ~18 % over the loop: generator
        forward+backward, batch 4, 128^2, 1.85 vs 1.58 s/img (split convs); full paper-size
        GAN step 0-10 % (``benchmarks/models.py``, ``benchmarks/train_step.py``).
      input_skip: add the input ``y`` to the output, so the network learns the correction
        ``x - y`` and starts near the JPEG decode (not in the paper; for short trainings).
      dtype: computation dtype (bfloat16 works); the output is always float32.
      param_dtype: parameter dtype (keep float32).
    """

    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    noise: bool = True
    film: bool = False
    film_dim: int = 128
    pad_multiple: int = 16
    split_convs: bool | None = None
    remat: bool = False
    scan: bool = False
    input_skip: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _conv(self, features: int, name: str, noise: bool = False) -> DenseConv:
        return DenseConv(
            features, noise=noise, dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )

    def _blocks(self, deterministic: bool) -> tuple[list[RRDB], list[FiLM]]:
        split = self.split_convs
        if split is None:
            split = jax.default_backend() == "cpu" and self.num_grow_ch >= 32
        kw = dict(noise=self.noise, split=split, deterministic=deterministic)
        blocks = [
            RRDB(self.num_feat, self.num_grow_ch, **kw, dtype=self.dtype,
                 param_dtype=self.param_dtype, name=f"body_{i}")
            for i in range(self.num_block)
        ]  # fmt: skip
        films = [
            FiLM(self.dtype, self.param_dtype, name=f"film_body_{i}")
            for i in range(self.num_block if self.film else 0)
        ]
        return blocks, films

    def _trunk(self, x: Array, emb: Array | None, deterministic: bool) -> Array:
        """The RRDB trunk (each block followed by FiLM when on), looped, remat'd or scanned.

        Outside initialisation every block runs as a pure function of (params, x, noise key):
        the key comes from the block's own "noise" stream, so the plain loop, the remat loop
        and the scan draw the same noise and give the same result.
        """
        blocks, films = self._blocks(deterministic)
        if self.is_initializing():
            for i, block in enumerate(blocks):
                x = films[i](block(x), emb) if self.film else block(x)
            return x
        draw = self.noise and not deterministic
        keys = [b.make_rng("noise") if draw else jax.random.key(0) for b in blocks]
        rrdb, film = blocks[0].clone(parent=None, name=None), FiLM(self.dtype, self.param_dtype)

        def step(params, x, key):  # params: (RRDB params, FiLM params, embedding)
            x = rrdb.apply({"params": params[0]}, x, rngs={"noise": key})
            return film.apply({"params": params[1]}, x, params[2]) if self.film else x

        params = [
            (b.variables["params"], films[i].variables["params"] if self.film else {})
            for i, b in enumerate(blocks)
        ]
        if self.scan:
            stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
            body = jax.checkpoint(step, prevent_cse=False) if self.remat else step
            scan_fn = lambda x, pk: (body((*pk[0], emb), x, pk[1]), None)
            return jax.lax.scan(scan_fn, x, (stacked, jnp.stack(keys)))[0]
        # The embedding is an explicit argument: a custom_vjp may not close over traced values.
        body = checkpoint_in_order(step) if self.remat else step
        for p, key in zip(params, keys, strict=True):
            x = body((*p, emb), x, key)
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

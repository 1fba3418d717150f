"""The conditional critic D(x, y): a ResNet34 body without normalisation (appendix A.1).

Choices (the appendix only says "a plain ResNet34"):
- No normalisation layer at all: R1 is a per-sample gradient penalty and BatchNorm would couple
  the samples of a batch (and make D(x) depend on the batch). Pre-activation basic blocks with
  a residual branch scaled by 0.1 (Mescheder et al. 2018, the authors' earlier code) keep the
  un-normalised 16-block body stable at initialisation.
- Conditioning on the JPEG input: ``y`` is concatenated with the image at the stem (6 input
  channels). For posterior sampling the critic must judge the pair (x, y), and the useful
  evidence (is x a plausible image whose JPEG is y? does it keep y's content?) is local and
  pixel-aligned, which a full-resolution channel concat exposes to the very first conv at no
  cost; a separate y branch would only add parameters.
- Optional quantization-table conditioning (``film=True``), projection-discriminator style
  (Miyato & Koyama 2018): logit = fc(phi) + <embed(qtables), phi>, phi the pooled features.
- ResNet's stem: stride-2 7x7 conv, activation, 3x3 stride-2 max pool (padding 1); then three
  stride-2 stages: downsampling by 32 in total, so inputs must be multiples of 32 (128 -> 4x4
  final map). The activation and max pool matter: a stem that averages its linear responses
  (no activation, 2x2 average pool) cannot tell a blurred restoration from the original, and at
  demo scale such a critic stayed at chance (``benchmarks/RESULTS.md``, "Demo results").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jpeg_jax.models.layers import QTableEmbedding, leaky_relu

Array = jax.Array
Dtype = Any


class BasicBlock(nn.Module):
    """Pre-activation basic block without normalisation: s(x) + scale * conv(act(conv(act(x))))."""

    features: int
    stride: int = 1
    residual_scale: float = 0.1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        conv = lambda f, k, s, name, bias=True: nn.Conv(
            f, (k, k), (s, s), use_bias=bias, dtype=self.dtype, param_dtype=self.param_dtype,
            name=name,
        )  # fmt: skip
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, 1, self.stride, "shortcut", bias=False)(x)
        dx = conv(self.features, 3, self.stride, "conv1")(leaky_relu(x))
        dx = conv(self.features, 3, 1, "conv2")(leaky_relu(dx))
        return shortcut + self.residual_scale * dx


class Critic(nn.Module):
    """D(x, y[, qtables]) -> one real/fake logit per image.

    Attributes:
      widths: channels of the four stages (ResNet34: 64, 128, 256, 512).
      blocks: basic blocks per stage (ResNet34: 3, 4, 6, 3).
      residual_scale: scaling of every residual branch.
      film: condition on the quantization tables (projection discriminator).
      film_dim: width of the quantization-table embedding MLP.
      dtype: computation dtype; logits are float32.
      param_dtype: parameter dtype.
    """

    widths: Sequence[int] = (64, 128, 256, 512)
    blocks: Sequence[int] = (3, 4, 6, 3)
    residual_scale: float = 0.1
    film: bool = False
    film_dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, y: Array, qtables: Array | None = None) -> Array:
        """Scores an image given its JPEG.

        Args:
          x: (B, H, W, 3) float RGB in [0, 1] (real or generated); H, W multiples of 32.
          y: (B, H, W, 3) float RGB in [0, 1], the decoded JPEG x is judged against.
          qtables: (B, 2, 8, 8) int32, required when ``film``, else ignored.

        Returns:
          (B,) float32 logits (positive = real).
        """
        if x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(f"Critic needs H, W multiples of 32, got {x.shape[1:3]}.")
        h = jnp.concatenate([x, y], axis=-1).astype(self.dtype)
        h = nn.Conv(
            self.widths[0], (7, 7), (2, 2), dtype=self.dtype, param_dtype=self.param_dtype,
            name="stem",
        )(h)  # fmt: skip
        h = nn.max_pool(leaky_relu(h), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for s, (width, n) in enumerate(zip(self.widths, self.blocks, strict=True)):
            for i in range(n):
                h = BasicBlock(
                    width,
                    stride=2 if (i == 0 and s > 0) else 1,
                    residual_scale=self.residual_scale,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"stage{s + 1}_block{i}",
                )(h)
        phi = jnp.mean(leaky_relu(h), axis=(1, 2)).astype(jnp.float32)  # (B, C)
        logit = nn.Dense(1, param_dtype=self.param_dtype, name="fc")(phi)[:, 0]
        if self.film:
            if qtables is None:
                raise ValueError("Critic(film=True) needs qtables of shape (B, 2, 8, 8).")
            emb = QTableEmbedding(self.film_dim, param_dtype=self.param_dtype, name="qtable_embed")(
                qtables
            )
            proj = nn.Dense(phi.shape[-1], param_dtype=self.param_dtype, name="qtable_proj")(emb)
            logit = logit + jnp.sum(proj * phi, axis=-1)
        return logit

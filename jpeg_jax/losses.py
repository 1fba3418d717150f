"""Losses of the posterior-sampling GAN (Man et al., CVPR-W 2023, Eq. 9, 10, 14-16).

Pure functions. Images are float32 NHWC RGB in [0, 1]; critic logits are (B,). Every function
returns an unweighted scalar: the caller multiplies by the config's lambdas, i.e. the generator
objective (Eq. 10) is

    1e-3 * generator_adversarial_loss + lambda_C(t) * consistency_penalty
        + lambda_FM * first_moment_penalty [+ lambda_SM * second_moment_penalty
        + lambda_P * perceptual_loss]

and the critic objective (Eq. 9) is ``critic_loss + r1_penalty(..., weight=lambda_R1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any

# ESRGAN / Real-ESRGAN perceptual loss (BasicSR PerceptualLoss): pre-activation VGG19 features,
# L1 distance, these layer weights.
PERCEPTUAL_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1.0,
    "conv4_4": 1.0,
    "conv5_4": 1.0,
}


# ----------------------------------------------------------------------------- adversarial


def critic_loss(real_logits: Array, fake_logits: Array) -> Array:
    """Non-saturating logistic critic loss (Eq. 9, without R1).

    ``mean(softplus(-D(x, y))) + mean(softplus(D(x_hat, y)))``.

    Args:
        real_logits: (B,) critic logits of real images x.
        fake_logits: (B,) critic logits of restorations x_hat (gradients to G stopped by caller).

    Returns:
        Scalar loss; ``2 log 2`` when all logits are 0.
    """
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_adversarial_loss(fake_logits: Array) -> Array:
    """Non-saturating generator loss ``mean(softplus(-D(x_hat, y)))`` (Eq. 10's V term).

    The paper scales it by 1e-3 (the config's weight, applied by the caller).

    Args:
        fake_logits: (B,) critic logits of restorations.
    """
    return jnp.mean(jax.nn.softplus(-fake_logits))


def r1_penalty_and_logits(
    critic_fn: Callable[[Array, Array], Array], x: Array, y: Array, *, weight: float = 1.0
) -> tuple[Array, Array]:
    """R1 penalty (Eq. 9) and the critic logits of the real images, from one forward pass.

    ``(weight / 2) * mean_b ||grad_x D(x_b, y_b)||^2``. The per-sample gradients come from the
    gradient of the *sum* of logits, which is exact because samples do not interact in the
    critic (no BatchNorm).

    Args:
        critic_fn: ``critic_fn(x, y) -> logits (B,)`` with the critic params closed over.
        x: (B, H, W, 3) real images in [0, 1].
        y: (B, H, W, 3) their JPEG-decoded inputs (the critic's condition).
        weight: lambda_R1 (1 in the paper).

    Returns:
        ``(penalty, logits)``: the scalar penalty and the (B,) logits ``D(x, y)``, which the
        caller can reuse in :func:`critic_loss`.
    """
    logits, vjp = jax.vjp(lambda images: critic_fn(images, y), x)
    (grad,) = vjp(jnp.ones_like(logits))
    sq_norm = jnp.sum(jnp.square(grad).reshape(grad.shape[0], -1), axis=-1)
    return 0.5 * weight * jnp.mean(sq_norm), logits


def r1_penalty(
    critic_fn: Callable[[Array, Array], Array], x: Array, y: Array, *, weight: float = 1.0
) -> Array:
    """R1 penalty ``(weight / 2) * mean_b ||grad_x D(x_b, y_b)||^2`` (Eq. 9).

    See :func:`r1_penalty_and_logits`, which also returns the logits.
    """
    return r1_penalty_and_logits(critic_fn, x, y, weight=weight)[0]


# ----------------------------------------------------------------------------- consistency


def consistency_hinge(
    c: Array, q: Array, *, margin_low: float = 0.4, margin_high: float = 0.6
) -> Array:
    """Smooth hinge on un-rounded quantized DCT coefficients, averaged (consistency C, Eq. 10).

    With ``e = |c - q|`` per coefficient: 0 for ``e <= margin_low``;
    ``(e - low)^2 / (2 (high - low))`` up to ``margin_high``; ``e - (low + high) / 2`` beyond
    (value and slope continuous). With the defaults: 0, ``2.5 (e - 0.4)^2``, ``e - 0.5``, a
    hinge at the quantization-bin edge 0.5 with margin 0.1.

    Args:
        c: un-rounded coefficients ``DCT(x_hat) / Q``, any shape.
        q: true integer coefficients, same shape (any float/int dtype).
        margin_low: end of the zero region.
        margin_high: start of the linear region (> margin_low).

    Returns:
        Scalar mean over all elements.
    """
    e = jnp.abs(c - q.astype(c.dtype))
    width = margin_high - margin_low
    quadratic = jnp.square(jnp.clip(e - margin_low, 0.0, width)) / (2.0 * width)
    linear = jnp.maximum(e - margin_high, 0.0)
    return jnp.mean(quadratic + linear)


def consistency_penalty(
    x_hat: Array,
    q_coeffs: Any,
    qtables: Array,
    *,
    subsampling: str = "4:2:0",
    exact: bool = True,
    margin_low: float = 0.4,
    margin_high: float = 0.6,
) -> Array:
    """Consistency penalty C: :func:`consistency_hinge` of ``x_hat``'s coefficients vs. y's.

    ``c = jpeg.quantized_dct(x_hat, qtables)`` (DCT of the YCbCr blocks divided by Q, never
    rounded, so no straight-through estimator is needed). All Y, Cb and Cr coefficients are
    flattened, concatenated and averaged together.

    The true coefficients ``q_coeffs`` are either the JPEG file's own (``jpeg.read_jpeg``) or
    ``jpeg.encode(x, qtables, subsampling=...)`` of the ground-truth target x with the batch's
    tables; for libjpeg-encoded training data the two agree up to rare rounding differences
    (libjpeg's integer DCT), so the target's encoding may stand in for the file.

    Args:
        x_hat: (B, H, W, 3) restorations, nominally in [0, 1] (the generator does not clip).
        q_coeffs: ``jpeg.Coefficients`` (y, cb, cr), each (B, Bh, Bw, 8, 8), integer-valued;
            cb/cr None for "gray".
        qtables: (B, 2, 8, 8) or (2, 8, 8) quantization tables of y.
        subsampling: chroma subsampling of y ("4:4:4", "4:2:2", "4:2:0", "4:4:0", "gray").
        exact: True computes the coefficients of the file a user would get by saving
            ``x_hat`` as 8-bit and re-encoding it with libjpeg: pixels clipped to [0, 1] and
            rounded to 8 bits, libjpeg's integer colour conversion and chroma downsampling
            (``jpeg.quantized_dct(exact=True)``). Every one of those steps is straight-through,
            the clipping included, so the gradient is exactly the float pipeline's everywhere:
            pixels the generator pushes outside [0, 1] still feel the consistency penalty, as in
            the authors' float pipeline and as :class:`jpeg_jax.models.Generator` (whose output
            is deliberately not clipped) relies on. False keeps the forward pass smooth as the
            paper's differentiable JPEG (no clipping, no rounding).
        margin_low, margin_high: hinge margins (see :func:`consistency_hinge`).

    Returns:
        Scalar penalty (mean over batch and all coefficients).
    """
    from jpeg_jax import jpeg  # lazy: the JPEG core imports more than the losses need

    if exact:
        # The saved image is clipped, but ``jpeg.quantized_dct`` clamps with a zero gradient
        # outside [0, 255]; clipping here first with a straight-through gradient keeps its values
        # and passes the float pipeline's gradient to out-of-range pixels (see ``exact``).
        x_hat = x_hat + jax.lax.stop_gradient(jnp.clip(x_hat, 0.0, 1.0) - x_hat)
    c = jpeg.quantized_dct(x_hat, qtables, subsampling=subsampling, exact=exact)
    pairs = [(a, b) for a, b in zip(c, q_coeffs, strict=True) if a is not None]
    c_flat = jnp.concatenate([a.reshape(a.shape[0], -1) for a, _ in pairs], axis=-1)
    q_flat = jnp.concatenate([b.reshape(b.shape[0], -1) for _, b in pairs], axis=-1)
    return consistency_hinge(
        c_flat, jax.lax.stop_gradient(q_flat), margin_low=margin_low, margin_high=margin_high
    )


# ----------------------------------------------------------------------------- moments


def draw_samples(
    apply_fn: Callable[[PyTree, Array, Array, Array], Array],
    params: PyTree,
    y: Array,
    qtables: Array,
    key: Array,
    num_samples: int,
) -> Array:
    """Draw ``num_samples`` restorations per input, vmapped over noise keys (one XLA batch).

    Args:
        apply_fn: ``apply_fn(params, y, qtables, key) -> x_hat (B, H, W, 3)``, e.g.
            ``lambda p, y, q, k: gen.apply({"params": p}, y, q, rngs={"noise": k})``.
        params: generator params.
        y: (B, H, W, 3) JPEG-decoded inputs in [0, 1] (the paper uses the batch's first 8).
        qtables: tables as ``apply_fn`` takes them, e.g. (B, 2, 8, 8).
        key: PRNG key; sample i uses ``jax.random.split(key, num_samples)[i]``.
        num_samples: S (16 in the paper).

    Returns:
        (S, B, H, W, 3) samples.
    """
    keys = jax.random.split(key, num_samples)
    return jax.vmap(lambda k: apply_fn(params, y, qtables, k))(keys)


def first_moment_penalty(x: Array, samples: Array) -> Array:
    """First-moment penalty FM: ``mean((mean_s samples - x)^2)`` over pixels and batch.

    Args:
        x: (B, H, W, C) ground truth in [0, 1].
        samples: (S, B, H, W, C) restorations of the same inputs with S noise draws.
    """
    return jnp.mean(jnp.square(jnp.mean(samples, axis=0) - x))


def second_moment_penalty(x: Array, samples: Array, x_mmse: Array) -> Array:
    """Second-moment penalty SM (appendix C, Eq. 14-16), without lambda_SM.

    ``mean | var_s(samples) - (x - x_mmse)^2 |``: the biased (1/S) per-pixel sample variance of
    the restorations (Eq. 15) against the single-sample variance estimate of the ground truth
    around a frozen MMSE regression model X_bar(y) (Eq. 14), averaged over pixels, channels and
    batch (Eq. 16).

    Args:
        x: (B, H, W, C) ground truth in [0, 1].
        samples: (S, B, H, W, C) restorations with S noise draws.
        x_mmse: (B, H, W, C) the MMSE model's output X_bar(y) (gradients stopped here).
    """
    target_var = jnp.square(x - jax.lax.stop_gradient(x_mmse))
    sample_var = jnp.mean(jnp.square(samples - jnp.mean(samples, axis=0)), axis=0)
    return jnp.mean(jnp.abs(sample_var - target_var))


# ----------------------------------------------------------------------------- pixel / VGG


def mse_loss(x: Array, x_hat: Array) -> Array:
    """Mean squared error over all pixels (regression / MMSE mode), images in [0, 1]."""
    return jnp.mean(jnp.square(x_hat - x))


def perceptual_loss(
    vgg_params: PyTree,
    x: Array,
    x_hat: Array,
    *,
    layer_weights: Mapping[str, float] = PERCEPTUAL_LAYER_WEIGHTS,
) -> Array:
    """VGG19 perceptual loss P (lambda_P = 1e-2 for general content).

    The paper does not specify P; we use ESRGAN / Real-ESRGAN's (BasicSR ``PerceptualLoss``):
    ImageNet mean/std normalisation, *pre-activation* VGG19 features, per layer the mean L1
    distance, summed with :data:`PERCEPTUAL_LAYER_WEIGHTS` (conv1_2 0.1, conv2_2 0.1,
    conv3_4 1, conv4_4 1, conv5_4 1).

    Args:
        vgg_params: params of ``jpeg_jax.models.vgg.VGG19Features`` (``vgg.load_vgg19``).
        x: (B, H, W, 3) ground truth in [0, 1] (its features are treated as constants).
        x_hat: (B, H, W, 3) restorations in [0, 1].
        layer_weights: ``{layer name: weight}``, names from ``vgg.LAYER_NAMES``.

    Returns:
        Scalar loss.
    """
    from jpeg_jax.models import vgg

    unknown = sorted(set(layer_weights) - set(vgg.LAYER_NAMES))
    if unknown or not layer_weights:
        raise ValueError(f"layer_weights: unknown VGG19 layers {unknown}; use {vgg.LAYER_NAMES}")
    last = max(layer_weights, key=vgg.LAYER_NAMES.index)
    model = vgg.VGG19Features(last_layer=last)
    feats_hat = model.apply({"params": vgg_params}, x_hat)
    feats = jax.lax.stop_gradient(model.apply({"params": vgg_params}, x))
    terms = [w * jnp.mean(jnp.abs(feats_hat[k] - feats[k])) for k, w in layer_weights.items()]
    return sum(terms[1:], terms[0])

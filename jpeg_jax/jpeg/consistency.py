"""Consistency with a JPEG file: projection onto the consistent set and measurements.

An image is *consistent* with a JPEG file when re-encoding it with the file's tables and
subsampling gives back the file's quantized coefficients, i.e. every un-rounded quantized DCT
coefficient lies in its quantization bin ``[q - 0.5, q + 0.5]``.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jpeg_jax.jpeg import chroma, codec, color, dct
from jpeg_jax.jpeg.io import JpegImage, pillow_encode, read_jpeg


def _correction(c: jax.Array, q: jax.Array, margin: float) -> jax.Array:
    """Move coefficients outside their bin to ``q +- margin`` toward ``c``; return the shift."""
    diff = c - q
    target = jnp.where(jnp.abs(diff) <= 0.5, c, q + margin * jnp.sign(diff))
    return target - c


def _pixel_shift(shift: jax.Array, q: jax.Array) -> jax.Array:
    """Pixel-domain correction of one component for coefficient shifts on its block grid."""
    return dct.unblockify(dct.idct_2d(shift * q))


def _fold(plane: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Crop a correction to ``size``, folding the padded rows/columns onto the edge.

    The encoder fills the padding by replicating the last row and column, so a change wanted on
    the padding is a change of the edge pixel: the least-squares edge update is the mean over
    the edge and its copies (``(P^T P)^-1 P^T`` for the replication ``P``).
    """
    h, w = size
    plane = jnp.concatenate(
        [plane[..., : h - 1, :], plane[..., h - 1 :, :].mean(axis=-2, keepdims=True)], axis=-2
    )
    return jnp.concatenate(
        [plane[..., :, : w - 1], plane[..., :, w - 1 :].mean(axis=-1, keepdims=True)], axis=-1
    )


def _project_once(images, coefficients, qtables, subsampling, margin):
    size = images.shape[-3:-1]
    c = codec.quantized_dct(images, qtables, subsampling=subsampling, exact=False)
    q_luma, q_chroma = codec.block_qtables(qtables, 8)
    y, cb, cr = color.rgb_to_ycbcr(images * 255.0)
    y = y + _fold(_pixel_shift(_correction(c.y, coefficients.y, margin), q_luma), size)
    factors = codec.SUBSAMPLING[subsampling]
    if factors is None:
        return jnp.repeat(y[..., None], 3, axis=-1) / 255.0
    h, v = factors
    lifted = []
    for plane, ci, qi in ((cb, c.cb, coefficients.cb), (cr, c.cr, coefficients.cr)):
        shift = _pixel_shift(_correction(ci, qi, margin), q_chroma)
        # Nearest replication is the right inverse of box averaging: the subsampled grid moves
        # exactly by `shift`, and the image keeps its own full-resolution chroma detail.
        lifted.append(plane + _fold(chroma.replicate(shift, h, v), size))
    return color.ycbcr_to_rgb(y, *lifted) / 255.0


def project(
    images: jax.Array,
    coefficients: codec.Coefficients,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    margin: float = 0.4,
    max_iterations: int = 16,
) -> jax.Array:
    """Project images onto the set consistent with a JPEG file (the paper's "-P").

    Every DCT coefficient outside its quantization bin is moved to ``q +- margin`` toward the
    image (inside ones stay), then the result is decoded without rounding. Chroma corrections
    are computed on the subsampled grid and lifted by nearest replication (the right inverse of
    box averaging), so the image keeps its own full-resolution chroma detail. One pass is exact
    for sizes that are whole MCUs; otherwise libjpeg re-pads edge blocks by replication, and
    passes repeat (``lax.while_loop``) until every coefficient is in its bin or
    ``max_iterations`` is reached.

    Args:
      images: float32 ``(..., H, W, 3)`` RGB in [0, 1].
      coefficients: the file's integer coefficients (``read_jpeg(f).coefficients``).
      qtables: ``(..., 2, 8, 8)`` the file's tables.
      subsampling: the file's chroma subsampling.
      margin: where out-of-bin coefficients land, in quantization steps from ``q``.
      max_iterations: bound on the passes for sizes that are not whole MCUs.

    Returns:
      float32 images of the same shape, not clipped or rounded (clipping or 8-bit rounding can
      move a few coefficients out of their bins again).
    """
    coefficients = codec.Coefficients(
        *(None if c is None else jnp.asarray(c, jnp.float32) for c in coefficients)
    )
    out = _project_once(images.astype(jnp.float32), coefficients, qtables, subsampling, margin)
    h, v = codec.SUBSAMPLING[subsampling] or (1, 1)
    height, width = images.shape[-3:-1]
    if height % (8 * v) == 0 and width % (8 * h) == 0:
        return out

    def not_done(state):
        i, x = state
        inside = in_bin_fraction(x, coefficients, qtables, subsampling=subsampling)
        return (i < max_iterations) & jnp.any(inside < 1.0)

    def step(state):
        i, x = state
        return i + 1, _project_once(x, coefficients, qtables, subsampling, margin)

    return jax.lax.while_loop(not_done, step, (1, out))[1]


def in_bin_fraction(images, coefficients, qtables, *, subsampling="4:2:0") -> jax.Array:
    """Fraction of DCT coefficients of ``images`` (float pipeline) inside the file's bins.

    Returns one value per image (shape ``images.shape[:-3]``).
    """
    c = codec.quantized_dct(images, qtables, subsampling=subsampling, exact=False)
    inside, total = 0.0, 0
    for ci, qi in zip(c, coefficients):
        if ci is None:
            continue
        ok = jnp.abs(ci - jnp.asarray(qi, jnp.float32)) <= 0.5
        inside = inside + ok.sum(axis=(-4, -3, -2, -1))
        total += int(np.prod(ci.shape[-4:]))
    # Exact 1.0 when all are inside (XLA may turn the division into a reciprocal multiply).
    return jnp.where(inside == total, 1.0, inside / total)


def _pillow_compress(image_u8: np.ndarray, qtables: np.ndarray, subsampling: str) -> np.ndarray:
    """libjpeg round trip of one 8-bit image with explicit tables (Pillow)."""
    data = pillow_encode(image_u8, qtables=qtables, subsampling=subsampling)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def libjpeg_compress(images, qtables, *, subsampling: str = "4:2:0") -> np.ndarray:
    """Real libjpeg (Pillow) encode + decode of ``(..., H, W, 3)`` images in [0, 1] -> uint8."""
    images = np.asarray(images)
    u8 = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    tables = np.broadcast_to(np.asarray(qtables), images.shape[:-3] + (2, 8, 8))
    flat_images, flat_tables = u8.reshape(-1, *u8.shape[-3:]), tables.reshape(-1, 2, 8, 8)
    out = [_pillow_compress(x, t, subsampling) for x, t in zip(flat_images, flat_tables)]
    return np.stack(out).reshape(u8.shape)


def consistency(
    images: jax.Array,
    reference: JpegImage | codec.Coefficients | jax.Array,
    qtables: jax.Array | None = None,
    *,
    subsampling: str | None = None,
    backend: str = "jax",
) -> dict[str, np.ndarray]:
    """How consistent restorations are with a JPEG file.

    Args:
      images: float32 ``(..., H, W, 3)`` restorations in [0, 1].
      reference: a :class:`JpegImage` (its coefficients, tables, subsampling and libjpeg decode
        are used), the file's :class:`Coefficients`, or the JPEG's decoded images
        ``(..., H, W, 3)`` in [0, 1] (their coefficients are recovered by re-encoding).
      qtables: the file's tables (taken from a ``JpegImage`` when omitted).
      subsampling: the file's subsampling (taken from a ``JpegImage``; default "4:2:0").
      backend: codec for the round trip of the 8-bit-rounded images: "jax" (this package) or
        "libjpeg" (Pillow, as the paper's tables are computed).

    Returns:
      ``rmse``: RMSE in 8-bit grey levels between the round trip of the restoration and the
      JPEG's own decode, per image; ``in_bin``: fraction of the restoration's coefficients
      (float, unrounded) inside the file's quantization bins, per image.
    """
    if backend not in ("jax", "libjpeg"):
        raise ValueError(f"backend must be 'jax' or 'libjpeg', got {backend!r}")
    if isinstance(reference, str | bytes):
        reference = read_jpeg(reference)
    size = images.shape[-3:-1]
    if isinstance(reference, JpegImage):
        qtables = reference.qtables if qtables is None else qtables
        subsampling = subsampling or reference.subsampling
        coefficients, decoded = reference.coefficients, reference.pixels / 255.0
    elif isinstance(reference, codec.Coefficients):
        subsampling = subsampling or "4:2:0"
        coefficients = reference
        decoded = codec.decode(reference, qtables, subsampling=subsampling, size=size)
    else:
        subsampling = subsampling or "4:2:0"
        decoded = jnp.asarray(reference, jnp.float32)
        coefficients = codec.encode(decoded, qtables, subsampling=subsampling)
    if qtables is None:
        raise ValueError("qtables are required unless reference is a JpegImage")
    if backend == "libjpeg":
        if isinstance(reference, codec.Coefficients):
            decoded = libjpeg_compress(decoded, qtables, subsampling=subsampling) / 255.0
        roundtrip = libjpeg_compress(images, qtables, subsampling=subsampling) / 255.0
    else:
        rounded = jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0) / 255.0
        roundtrip = codec.compress(rounded, qtables, subsampling=subsampling)
    diff = (np.asarray(roundtrip, np.float64) - np.asarray(decoded, np.float64)) * 255.0
    rmse = np.sqrt(np.mean(diff**2, axis=(-3, -2, -1)))
    in_bin = in_bin_fraction(images, coefficients, qtables, subsampling=subsampling)
    return {"rmse": rmse, "in_bin": np.asarray(in_bin)}

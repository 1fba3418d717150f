"""Image statistics of the demo's table that need no learned weights: blockiness and sharpness.

Images are float NHWC RGB in [0, 1] (a single ``(H, W, 3)`` image is accepted too); values are
taken in 8-bit units; results are float64, one value per image.

**Blockiness** (:func:`blockiness`): the mean absolute difference of horizontally or vertically
adjacent pixels that straddle an 8x8 block boundary, divided by the same mean over adjacent
pairs inside blocks (both directions and the three RGB channels pooled, so the 16x16 colour
tiles of 4:2:0 chroma count as well as luma steps). An image without a block grid scores about
1; a JPEG at low quality scores well above 1, most of all where its blocks are flat (only a DC
coefficient), which decode to constant tiles with steps between them. With ``mask`` the pairs
are restricted to a region of blocks, e.g. :func:`flat_blocks` of the file: "is there an 8x8
grid left in flat regions?" (there even the original scores somewhat below 1: a block whose AC
coefficients all quantize to zero varies little near its edges, where the DCT's low
frequencies weigh most). This is the boundary/interior contrast that the blocking-effect
factor BEF (Yim & Bovik, IEEE TIP 2011) builds on; BEF takes the *difference* of squared
boundary and non-boundary differences scaled by block and image size, the ratio here is
unitless and reads the same for any image size.

**Sharpness** (:func:`high_frequency_energy`, :func:`sharpness`): the energy (mean square) of
the luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (JFIF weights) minus its Gaussian blur (sigma 1
pixel), i.e. of its finest details; relative to the original's, < 1 means blurrier than the
original, > 1 more high-frequency content (detail or artifacts).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

BLOCK = 8
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def luma(images: ArrayLike) -> np.ndarray:
    """Float RGB ``(..., H, W, 3)`` in [0, 1] -> luma ``(..., H, W)`` in 8-bit units (float64)."""
    images = np.asarray(images, np.float64)
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) RGB images, got shape {images.shape}")
    return (images @ LUMA_WEIGHTS) * 255.0


def flat_blocks(luma_coefficients: ArrayLike) -> np.ndarray:
    """Blocks of a JPEG file that hold only a DC coefficient (no texture left), ``(Bh, Bw)`` bool.

    Args:
      luma_coefficients: the file's quantized luma coefficients ``(Bh, Bw, 8, 8)``, e.g.
        ``jpeg.read_jpeg(...).coefficients.y``.
    """
    c = np.asarray(luma_coefficients)
    if c.ndim != 4 or c.shape[-2:] != (BLOCK, BLOCK):
        raise ValueError(f"expected (Bh, Bw, 8, 8) coefficients, got shape {c.shape}")
    ac = c.reshape(*c.shape[:2], BLOCK * BLOCK)[..., 1:]
    return ~np.any(ac != 0, axis=-1)


def _pair_masks(height: int, width: int, mask: np.ndarray | None):
    """Per direction: (boundary, interior) boolean masks of adjacent pairs inside ``mask``."""
    out = []
    for axis, n in ((0, height), (1, width)):
        idx = np.arange(n - 1)  # pair (i, i + 1) along this axis
        boundary = (idx + 1) % BLOCK == 0
        shape = (n - 1, 1) if axis == 0 else (1, n - 1)
        boundary = np.broadcast_to(boundary.reshape(shape), (height - (axis == 0), width - axis))
        keep = np.ones_like(boundary)
        if mask is not None:
            pixels = np.repeat(np.repeat(mask, BLOCK, 0), BLOCK, 1)[:height, :width]
            keep = pixels[:-1, :] & pixels[1:, :] if axis == 0 else pixels[:, :-1] & pixels[:, 1:]
        out.append((boundary & keep, ~boundary & keep))
    return out


def blockiness(images: ArrayLike, *, mask: ArrayLike | None = None) -> np.ndarray:
    """Boundary / interior ratio of mean absolute adjacent-pixel differences (see module).

    Args:
      images: float ``(..., H, W, 3)`` RGB in [0, 1]; the 8x8 grid starts at pixel (0, 0).
      mask: optional ``(ceil(H / 8), ceil(W / 8))`` bool, the blocks to measure (a pair counts
        when both its pixels lie in masked blocks).

    Returns:
      float64 ``(...)``: 1 for no grid; ``nan`` when the mask leaves no boundary or interior pair.
    """
    images = np.asarray(images, np.float64)
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) RGB images, got shape {images.shape}")
    y = np.moveaxis(images, -1, -3) * 255.0  # (..., 3, H, W): channels pooled below
    h, w = y.shape[-2:]
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (-(-h // BLOCK), -(-w // BLOCK)):
            raise ValueError(f"mask shape {mask.shape} does not match {h}x{w} images' blocks")
    sums = np.zeros((2,) + y.shape[:-3])
    counts = np.zeros(2)
    diffs = (np.abs(np.diff(y, axis=-2)), np.abs(np.diff(y, axis=-1)))
    for d, masks in zip(diffs, _pair_masks(h, w, mask)):
        for k, m in enumerate(masks):
            sums[k] += np.sum(d * m, axis=(-3, -2, -1))
            counts[k] += 3 * np.count_nonzero(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / counts.reshape((2,) + (1,) * (sums.ndim - 1))
        return means[0] / means[1]


def gaussian_blur(y: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``(..., H, W)`` over the last two axes.

    The kernel is truncated at 4 sigma and normalised; borders are mirrored with the edge pixel
    repeated (``scipy.ndimage.gaussian_filter``'s default "reflect" mode, which it equals).
    """
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (-2, -1):
        pad = [(0, 0)] * y.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(y, pad, mode="symmetric")
        n = y.shape[axis]
        y = sum(t * np.take(padded, range(i, i + n), axis=axis) for i, t in enumerate(taps))
    return y


def high_frequency_energy(images: ArrayLike, *, sigma: float = 1.0) -> np.ndarray:
    """Mean square of ``luma - gaussian_blur(luma, sigma)`` per image, in squared grey levels."""
    y = luma(images)
    return np.mean(np.square(y - gaussian_blur(y, sigma)), axis=(-2, -1))


def sharpness(images: ArrayLike, reference: ArrayLike, *, sigma: float = 1.0) -> np.ndarray:
    """:func:`high_frequency_energy` of ``images`` relative to that of ``reference`` (the original).

    ``reference`` is ``(H, W, 3)`` or has the shape of ``images``; 1 = as much fine detail as
    the original, < 1 blurrier.
    """
    return high_frequency_energy(images, sigma=sigma) / high_frequency_energy(
        reference, sigma=sigma
    )

"""Image-quality metrics of the paper's tables: PSNR, per-pixel sample spread, FID and KID.

Everything here is host-side NumPy in float64 (only the Inception features run in JAX). Images are
float NHWC RGB in [0, 1]; PSNR and standard deviations are reported in 8-bit units (0-255).

FID follows pytorch-fid (pool3 features of the FID Inception, mean and ``ddof=1`` covariance, the
Frechet distance of the two Gaussians); KID follows torch-fidelity (unbiased MMD^2 with the cubic
polynomial kernel over random equal-size subsets, mean and std over subsets).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from jpeg_jax.models import inception

MAX_8BIT = 255.0


def to_8bit(images: ArrayLike) -> np.ndarray:
    """Float [0, 1] images -> their 8-bit values (clip, x255, round half to even), as float64."""
    return np.round(np.clip(np.asarray(images, np.float64), 0.0, 1.0) * MAX_8BIT)


def psnr(a: ArrayLike, b: ArrayLike, *, quantize: bool = False) -> np.ndarray:
    """Peak signal-to-noise ratio per image, in dB with peak 255 over all RGB values.

    Computed on the images as given, scaled by 255 (``quantize=False``): a float restoration is
    scored before rounding. With ``quantize=True`` both are first rounded to 8 bits (see
    :func:`to_8bit`), as if saved to PNG. Tables report the mean of the per-image values.

    Args:
      a, b: float (..., H, W, C) in [0, 1], same shape.
      quantize: round both to 8-bit values first.

    Returns:
      float64 (...) PSNR per image; ``inf`` where the images are equal.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(
            f"psnr needs two (..., H, W, C) arrays of one shape, got {a.shape}, {b.shape}"
        )
    if quantize:
        a, b = to_8bit(a), to_8bit(b)
    else:
        a, b = a * MAX_8BIT, b * MAX_8BIT
    mse = np.mean(np.square(a - b), axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(MAX_8BIT**2 / mse)


def pixel_std(samples: ArrayLike) -> np.ndarray:
    """Per-pixel, per-channel standard deviation over posterior samples, in 8-bit units.

    Args:
      samples: float (S, ..., H, W, C) in [0, 1]; axis 0 indexes the samples of one input.

    Returns:
      float64 (..., H, W, C): population std (``ddof=0``) over axis 0, times 255.
    """
    samples = np.asarray(samples, np.float64)
    if samples.ndim < 4 or samples.shape[0] < 2:
        raise ValueError(f"pixel_std needs (S >= 2, ..., H, W, C) samples, got {samples.shape}")
    return np.std(samples, axis=0) * MAX_8BIT


def mean_pixel_std(samples: ArrayLike) -> float:
    """Mean of :func:`pixel_std` over pixels, channels (and images): the tables' "std" column."""
    return float(np.mean(pixel_std(samples)))


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 (as pytorch-fid)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics needs (N >= 2, D) features, got {features.shape}")
    mu = features.mean(axis=0)
    centered = features - mu
    return mu, centered.T @ centered / (features.shape[0] - 1)


def sqrtm_psd(matrix: ArrayLike) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh; negative
    round-off eigenvalues clipped to 0), float64."""
    matrix = np.asarray(matrix, np.float64)
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.maximum(eigvals, 0.0))) @ eigvecs.T


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    """``tr sqrtm(sigma1 @ sigma2)`` for covariance matrices, without complex arithmetic.

    ``sigma1 sigma2`` is similar to ``S1 sigma2 S1`` (``S1 = sqrtm(sigma1)``), whose eigenvalues are
    the squared singular values of ``sqrtm(sigma2) S1``; summing those singular values avoids the
    squared condition number (and the ``eps`` offset pytorch-fid needs for singular covariances).
    """
    product = sqrtm_psd(sigma2) @ sqrtm_psd(sigma1)
    return float(np.sum(np.linalg.svd(product, compute_uv=False)))


def trace_sqrt_product_features(root1: ArrayLike, features2: ArrayLike) -> float:
    """``tr sqrtm(sigma1 @ sigma2)`` with ``sigma2`` the ``ddof=1`` covariance of ``features2``.

    With ``C`` the centred (N, D) features, ``sigma2 = C^T C / (N - 1)``, so ``S1 sigma2 S1`` (for
    ``S1 = root1 = sqrtm_psd(sigma1)``) has the eigenvalues ``s_i^2 / (N - 1)`` where ``s_i`` are
    the singular values of ``C S1``. One (N, D) SVD, without forming ``sigma2``'s square root:
    several times faster than :func:`trace_sqrt_product` when ``root1`` is reused (a fixed FID
    reference) and as accurate (no squared condition number).

    Args:
      root1: (D, D) symmetric square root of the first covariance (:func:`sqrtm_psd`).
      features2: (N >= 2, D) features.
    """
    features2 = np.asarray(features2, np.float64)
    if features2.ndim != 2 or features2.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got {features2.shape}")
    centered = features2 - features2.mean(axis=0)
    product = centered @ np.asarray(root1, np.float64)
    singular = np.linalg.svd(product, compute_uv=False)
    return float(np.sum(singular) / np.sqrt(features2.shape[0] - 1))


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet (2-Wasserstein^2) distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr sqrtm(sigma1 sigma2)``, in float64.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"mismatched statistics: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    trace_term = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace_term)


def fid_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """FID between two (N, D) feature sets (pool3 features for the standard FID)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_mmd2(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> float:
    """Unbiased MMD^2 estimate with the kernel ``(gamma <x, y> + coef0) ** degree``.

    Args:
      features1: (m, D); features2: (n, D); m, n >= 2.
      gamma: defaults to ``1 / D`` (the KID paper's kernel).
    """
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    m, n = x.shape[0], y.shape[0]
    gamma = 1.0 / x.shape[1] if gamma is None else gamma

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (gamma * (a @ b.T) + coef0) ** degree

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(
    features1: ArrayLike,
    features2: ArrayLike,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of :func:`polynomial_mmd2` over random subsets.

    Subsets are drawn as torch-fidelity does (``np.random.RandomState(seed)``, for each subset
    ``subset_size`` rows of ``features1`` then of ``features2``, without replacement; its defaults
    100 x 1000 and seed 2020), so equal inputs give torch-fidelity's numbers.

    When ``subset_size`` equals both N1 and N2, every subset is a permutation of the whole
    sets, so the estimate is computed once (std 0).

    Args:
      features1, features2: (N1, D), (N2, D) features; ``subset_size <= min(N1, N2)``.

    Returns:
      (mean, std) of the subset estimates (std with ``ddof=0``), unscaled (not x1000).
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if subset_size > min(len(f1), len(f2)) or subset_size < 2:
        raise ValueError(
            f"KID subset_size {subset_size} must be in [2, min(N1, N2)] "
            f"(N1={len(f1)}, N2={len(f2)})"
        )
    if subset_size == len(f1) == len(f2):
        # Every subset is a permutation of all features; the estimate does not depend on order.
        return polynomial_mmd2(f1, f2, degree=degree, gamma=gamma, coef0=coef0), 0.0
    rng = np.random.RandomState(seed)  # noqa: NPY002 -- torch-fidelity's generator and draws
    estimates = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        estimates[i] = polynomial_mmd2(x, y, degree=degree, gamma=gamma, coef0=coef0)
    return float(estimates.mean()), float(estimates.std())


class InceptionFeatureExtractor:
    """Pool3 features of the FID Inception for float [0, 1] NHWC images of any size.

    Images are resized to 299x299 (bilinear, as pytorch-fid, :func:`inception.resize_bilinear`)
    and processed in fixed-size batches (the last one padded), so one compiled network serves
    every call; the resize compiles once per input size. :class:`FeatureQueue` batches images
    that arrive a few at a time (and of mixed sizes) the same way.

    Example::

      extract = InceptionFeatureExtractor.from_file("fid_inception.npz")
      fid = fid_from_features(extract(real_images), extract(restored_images))
    """

    def __init__(self, variables: Any, *, batch_size: int = 50):
        """Args: variables: ``{"params", "batch_stats"}`` of :class:`FIDInceptionV3`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._variables = variables
        size = (inception.INPUT_SIZE, inception.INPUT_SIZE)
        self._resize = jax.jit(lambda x: inception.resize_bilinear(x, size))
        self._apply = jax.jit(inception.FIDInceptionV3(resize_input=False).apply)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, batch_size: int = 50
    ) -> InceptionFeatureExtractor:
        """Load converted weights (see :mod:`jpeg_jax.models.convert_inception`).

        Raises:
          FileNotFoundError, ValueError: missing or wrong file; the message says how to get one.
        """
        return cls(inception.load_variables(path), batch_size=batch_size)

    def resize(self, images: ArrayLike) -> jax.Array:
        """float (N, H, W, 3) in [0, 1] -> the network's (N, 299, 299, 3) float32 input."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB images, got {images.shape}")
        return self._resize(images)

    def features_of_resized(self, resized: jax.Array) -> np.ndarray:
        """Features of at most ``batch_size`` resized images, padded to one full batch."""
        count = resized.shape[0]
        if not 0 < count <= self.batch_size:
            raise ValueError(f"need 1..{self.batch_size} images, got {count}")
        if count < self.batch_size:
            padding = jnp.zeros((self.batch_size - count, *resized.shape[1:]), resized.dtype)
            resized = jnp.concatenate([resized, padding])
        return np.asarray(self._apply(self._variables, resized))[:count]

    def __call__(self, images: ArrayLike) -> np.ndarray:
        """Args: images: float (N, H, W, 3) RGB in [0, 1]. Returns: float32 (N, 2048) features."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB images, got {images.shape}")
        outputs = [
            self.features_of_resized(self.resize(images[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        if not outputs:
            return np.zeros((0, inception.FEATURE_DIM), np.float32)
        return np.concatenate(outputs)


class FeatureQueue:
    """Inception features of images that arrive a few at a time, computed in full batches.

    ``put(key, images)`` resizes the images to 299x299 at once (on the device) and queues them;
    the network runs whenever ``extractor.batch_size`` images are queued, whatever their keys
    and original sizes, so only the final :meth:`result` call runs a padded batch. Features come
    back per key in the order the images were put.

    Example::

      queue = FeatureQueue(extract)
      for batch in batches:
          queue.put("real", batch["x"])
          queue.put("restored", restore(batch))
      features = queue.result()  # {"real": (N, 2048), "restored": (N, 2048)}
    """

    def __init__(self, extractor: InceptionFeatureExtractor):
        self._extractor = extractor
        self._pending: list[tuple[Any, jax.Array]] = []  # (key, (n, 299, 299, 3)) in order
        self._queued = 0
        self._done: dict[Any, list[np.ndarray]] = {}
        self.batches_run = 0

    def put(self, key: Any, images: ArrayLike) -> None:
        """Queue float (N, H, W, 3) images in [0, 1] under ``key`` (any hashable)."""
        resized = self._extractor.resize(images)
        self._done.setdefault(key, [])
        if resized.shape[0]:
            self._pending.append((key, resized))
            self._queued += resized.shape[0]
        while self._queued >= self._extractor.batch_size:
            self._run(self._extractor.batch_size)

    def _run(self, count: int) -> None:
        """Features of the first ``count`` queued images (one network call)."""
        taken, parts, owners = 0, [], []
        while taken < count:
            key, images = self._pending[0]
            n = min(count - taken, images.shape[0])
            parts.append(images[:n])
            owners.append((key, n))
            if n == images.shape[0]:
                self._pending.pop(0)
            else:
                self._pending[0] = (key, images[n:])
            taken += n
        features = self._extractor.features_of_resized(jnp.concatenate(parts))
        self.batches_run += 1
        self._queued -= count
        start = 0
        for key, n in owners:
            self._done[key].append(features[start : start + n])
            start += n

    def take(self) -> dict[Any, np.ndarray]:
        """The features computed so far (not yet taken), float32 (n_key, 2048) per key.

        Images still queued are not included; they come with a later ``take`` or ``result``.
        """
        empty = np.zeros((0, inception.FEATURE_DIM), np.float32)
        done = {k: np.concatenate(v) if v else empty for k, v in self._done.items()}
        self._done = {k: [] for k in self._done}
        return done

    def result(self) -> dict[Any, np.ndarray]:
        """Run what is queued (one padded batch at most) and :meth:`take` everything."""
        if self._queued:
            self._run(self._queued)
        return self.take()

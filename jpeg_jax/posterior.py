"""Exploring the posterior of one JPEG file: region re-draw and principal components.

Regions are rectangles ``Box(top, left, bottom, right)`` in pixels of the stored (un-rotated)
image, half-open, on the 16-pixel macroblock grid (:func:`snap_box`): ``top``/``left`` multiples
of 16, ``bottom``/``right`` multiples of 16 or the image's edge. On that grid a region is a union
of whole MCUs for every chroma subsampling, so it can be projected onto the file's consistent
set without touching any pixel outside it.

The generator runs only on a crop around the region: the region plus ``margin`` pixels of the
file's decode on every side (clipped to the image), rounded up to a multiple of ``CROP_BUCKET``
so that rectangles of similar size share one compilation. ``margin`` must cover the generator's
effective receptive field (as the tiles' discarded margin in :mod:`jpeg_jax.sampling`; the
default is twice the tiling's 16 pixels): inside the region the crop's output is then what the
whole image's would be (deterministic path: equal within 1/255, tested).

:func:`redraw` gives a sample new noise inside a region: pixels outside it stay bit-identical,
and the new content is blended into the old with a window that is 1 inside and falls linearly
to 0 over the ``feather`` pixels nearest the region's edges (not at the image's edges), so no
seam shows. :func:`principal_components` summarises N samples of a region by their top-k
principal directions, the way NPPC (Nehme et al. 2023) and PUQ (Belhasin et al. 2023) present
posterior uncertainty: ``mean +- sqrt(lambda_i) * v_i`` images and the fraction of the total
variance each explains.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np

from jpeg_jax import jpeg, sampling

GRID = sampling.GRID
DEFAULT_MARGIN = 32  # pixels of context around a region (multiple of 16)
DEFAULT_FEATHER = 16  # pixels over which a re-drawn region blends into the old sample
CROP_BUCKET = 64  # crop sides are rounded up to multiples of this (fewer compilations)


class Box(NamedTuple):
    """A rectangle of the stored image in pixels: rows [top, bottom), columns [left, right)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` for indexing ``(H, W, ...)`` arrays."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def snap_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> Box:
    """The smallest rectangle on the 16-pixel grid containing ``box``, clipped to the image.

    Args:
      box: ``(top, left, bottom, right)`` in stored pixels (any integers or floats).
      size: ``(H, W)`` of the image.

    Raises:
      ValueError: when ``box`` has no pixel inside the image.
    """
    h, w = size
    top, left = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    bottom, right = min(int(np.ceil(box[2])), h), min(int(np.ceil(box[3])), w)
    if bottom <= top or right <= left:
        raise ValueError(f"region {tuple(box)} has no pixel inside the {h}x{w} image")
    top, left = top // GRID * GRID, left // GRID * GRID
    bottom, right = min(-(-bottom // GRID) * GRID, h), min(-(-right // GRID) * GRID, w)
    return Box(top, left, bottom, right)


def crop_window(box: Box, padded: tuple[int, int], margin: int = DEFAULT_MARGIN) -> Box:
    """The crop of the 16-padded image ``(Hp, Wp)`` the generator runs on for ``box``.

    It contains ``box`` widened by ``margin`` on every side (clipped to the image); its sides
    are multiples of ``CROP_BUCKET`` (or the whole padded side) and its origin is on the grid.
    """
    if margin < 0 or margin % GRID:
        raise ValueError(f"margin must be a non-negative multiple of {GRID}, got {margin}")
    out = []
    for lo, hi, length in ((box.top, box.bottom, padded[0]), (box.left, box.right, padded[1])):
        lo, hi = max(lo - margin, 0), min(-(-hi // GRID) * GRID + margin, length)
        side = min(-(-(hi - lo) // CROP_BUCKET) * CROP_BUCKET, length)
        start = min(lo, length - side)  # grow toward the far side, then back inside the image
        out.append((start, start + side))
    return Box(out[0][0], out[1][0], out[0][1], out[1][1])


@dataclasses.dataclass(frozen=True)
class _Prepared:
    model: Any
    variables: Any
    pixels: np.ndarray  # (H, W, 3) float32, the file's decode
    qtables: np.ndarray
    subsampling: str
    image: jpeg.JpegImage | None


def _prepare(params_or_export, source, qtables=None, subsampling=None) -> _Prepared:
    model, variables = sampling.resolve_model(params_or_export)
    return _Prepared(model, variables, *sampling.decoded_inputs(source, qtables, subsampling))


def _region_samples(prep: _Prepared, box: Box, rng, indices, temperature, margin) -> np.ndarray:
    """``(len(indices), h, w, 3)`` samples of ``box`` computed on its crop only."""
    h, w = prep.pixels.shape[:2]
    hp, wp = h + -h % GRID, w + -w % GRID
    crop = crop_window(box, (hp, wp), margin)
    padded = np.pad(prep.pixels, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    out = sampling.sample_tile(
        prep.model,
        prep.variables,
        padded[crop.slices()],
        np.asarray(prep.qtables, np.int32),
        rng,
        np.asarray(indices, np.int32),
        np.int32(0),
        temperature=np.float32(temperature),
        deterministic=temperature == 0,
        gray=prep.subsampling == "gray",
    )
    rows = slice(box.top - crop.top, box.bottom - crop.top)
    cols = slice(box.left - crop.left, box.right - crop.left)
    return np.asarray(out)[:, rows, cols]


def region_samples(
    params_or_export: Any,
    source: jpeg.JpegImage | np.ndarray,
    box: tuple[int, int, int, int],
    num_samples: int,
    rng: jax.Array,
    *,
    qtables: np.ndarray | None = None,
    subsampling: str | None = None,
    temperature: float = 1.0,
    margin: int = DEFAULT_MARGIN,
    batch_size: int = sampling.DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """``num_samples`` posterior samples of one region, the generator run on its crop only.

    Args:
      params_or_export, source, qtables, subsampling: as :func:`jpeg_jax.sampling.restore`.
      box: the region (snapped to the grid with :func:`snap_box` first).
      num_samples: N >= 1; sample ``i`` uses the key ``fold_in(fold_in(rng, i), 0)``.
      rng: a JAX PRNG key.
      temperature: tau >= 0, the factor on the injected noise (0: the deterministic path).
      margin: context pixels around the region (multiple of 16; see the module docstring).
      batch_size: samples per generator call.

    Returns:
      float32 ``(N, h, w, 3)`` in [0, 1], ``(h, w)`` the snapped region's size.
    """
    temperature = sampling.check_temperature(temperature)
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}")
    prep = _prepare(params_or_export, source, qtables, subsampling)
    box = snap_box(box, prep.pixels.shape[:2])
    batch_size = min(batch_size, num_samples)
    parts = []
    for start in range(0, num_samples, batch_size):
        indices = np.arange(start, start + batch_size)  # the last batch is padded: one shape
        out = _region_samples(prep, box, rng, indices, temperature, margin)
        parts.append(out[: num_samples - start])
    return np.concatenate(parts)


def feather_window(box: Box, size: tuple[int, int], feather: int) -> np.ndarray:
    """``(h, w, 1)`` blending weight of a re-drawn region: 1 inside, falling linearly toward 0
    over the ``feather`` pixels nearest each edge of ``box`` that lies inside the image."""
    axes = []
    for lo, hi, length in ((box.top, box.bottom, size[0]), (box.left, box.right, size[1])):
        centres = np.arange(hi - lo, dtype=np.float64) + 0.5
        weight = np.ones(hi - lo)
        if feather > 0 and lo > 0:
            weight = np.minimum(weight, centres / feather)
        if feather > 0 and hi < length:
            weight = np.minimum(weight, (hi - lo - centres) / feather)
        axes.append(weight)
    return np.outer(*axes).astype(np.float32)[..., None]


def redraw(
    params_or_export: Any,
    source: jpeg.JpegImage | np.ndarray,
    sample: np.ndarray,
    box: tuple[int, int, int, int],
    rng: jax.Array,
    *,
    qtables: np.ndarray | None = None,
    subsampling: str | None = None,
    temperature: float = 1.0,
    margin: int = DEFAULT_MARGIN,
    feather: int = DEFAULT_FEATHER,
    project: bool = False,
) -> np.ndarray:
    """``sample`` with new noise inside ``box``; every pixel outside it is left as it was.

    Args:
      params_or_export, source, qtables, subsampling: as :func:`jpeg_jax.sampling.restore`.
      sample: float32 ``(H, W, 3)``, the current sample (e.g. ``restore(...).samples[i]``).
      box: the region; snapped outward to the 16-pixel grid (:func:`snap_box`).
      rng: the key of the new noise (``fold_in(fold_in(rng, 0), 0)`` as in
        :func:`region_samples`).
      temperature: tau >= 0, the factor on the injected noise.
      margin: context pixels around the region the generator sees (multiple of 16).
      feather: pixels over which the new content blends into the old at the region's edges.
      project: project the region onto the file's consistent set (:func:`sampling.project_exact`
        on the region alone; needs a ``JpegImage``). A projected ``sample`` stays 100 % in-bin.

    Returns:
      float32 ``(H, W, 3)``: outside ``box`` bit-identical to ``sample``.
    """
    temperature = sampling.check_temperature(temperature)
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    prep = _prepare(params_or_export, source, qtables, subsampling)
    if project and prep.image is None:
        raise ValueError("project=True needs a JpegImage (the file's exact coefficients)")
    sample = np.asarray(sample, np.float32)
    if sample.shape != prep.pixels.shape:
        raise ValueError(
            f"sample must have the file's shape {prep.pixels.shape}, got {sample.shape}"
        )
    box = snap_box(box, sample.shape[:2])
    new = _region_samples(prep, box, rng, [0], temperature, margin)[0]
    window = feather_window(box, sample.shape[:2], feather)
    out = sample.copy()
    rows, cols = box.slices()
    out[rows, cols] = window * new + (1 - window) * sample[rows, cols]
    if project:
        out = sampling.project_exact(out, prep.image, box=tuple(box))
    return out


@dataclasses.dataclass(frozen=True)
class Components:
    """Top principal directions of N samples of a region (population covariance, 1/N).

    Attributes:
      mean: float32 ``(h, w, 3)`` the samples' mean.
      directions: float32 ``(k, h, w, 3)`` orthonormal ``v_i`` (unit norm over all values),
        sign chosen so that each one's largest entry is positive.
      variances: float64 ``(k,)`` ``lambda_i``, descending, in [0, 1]^2 units (x 255^2 for grey
        levels squared): the samples' variance along ``v_i``.
      total_variance: float64, the sum of the per-value variances (``= sum`` of every
        ``lambda``; the squared per-pixel std map summed).
    """

    mean: np.ndarray
    directions: np.ndarray
    variances: np.ndarray
    total_variance: float

    @property
    def explained(self) -> np.ndarray:
        """``(k,)`` fraction of the total variance along each direction."""
        total = self.total_variance
        return self.variances / total if total > 0 else np.zeros_like(self.variances)

    def image(self, i: int, sign: float = 1.0) -> np.ndarray:
        """``mean + sign * sqrt(lambda_i) * v_i`` (not clipped), float32 ``(h, w, 3)``."""
        step = sign * np.sqrt(self.variances[i]) * self.directions[i]
        return (self.mean + step).astype(np.float32)


def principal_components(samples: np.ndarray, k: int) -> Components:
    """The top-``k`` principal directions of ``(N, h, w, 3)`` samples.

    Computed from the eigenvectors of the ``N x N`` Gram matrix of the centred samples (cheap for
    few samples of many pixels): with ``X`` the centred samples as rows and ``G = X X^T / N =
    U diag(lambda) U^T``, ``v_i = X^T u_i / sqrt(N lambda_i)``.

    Args:
      samples: float ``(N, h, w, C)``, N >= 2.
      k: 1 <= k <= N - 1 (N samples span at most N - 1 directions around their mean).
    """
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    if samples.ndim != 4 or n < 2:
        raise ValueError(f"need (N >= 2, h, w, C) samples, got shape {samples.shape}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and N - 1 = {n - 1}, got {k}")
    mean = samples.mean(axis=0)
    x = (samples - mean).reshape(n, -1)
    eigenvalues, u = np.linalg.eigh(x @ x.T / n)
    order = np.argsort(eigenvalues)[::-1][:k]
    variances = np.maximum(eigenvalues[order], 0.0)
    directions = u[:, order].T @ x  # (k, D), norms sqrt(n * lambda_i)
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    directions = np.divide(directions, norms, out=np.zeros_like(directions), where=norms > 0)
    peak = directions[np.arange(k), np.argmax(np.abs(directions), axis=1)]
    directions *= np.where(peak < 0, -1.0, 1.0)[:, None]
    return Components(
        mean=mean.astype(np.float32),
        directions=directions.reshape(k, *samples.shape[1:]).astype(np.float32),
        variances=variances,
        total_variance=float(np.sum(x**2) / n),
    )

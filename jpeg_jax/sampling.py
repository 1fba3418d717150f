"""Posterior sampling: N restorations of one JPEG file from an exported generator.

:func:`restore` draws samples ``x_hat_i = G(y, z_i, qtables)`` of a decoded JPEG ``y`` with
fresh noise ``z_i`` per sample, optionally projected onto the set of images consistent with the
file (the paper's "-P"), plus their per-pixel mean (the paper's "-A" estimate, the posterior
mean) and standard deviation (an uncertainty map).

Samples are vmapped over noise keys, ``batch_size`` at a time, by one jitted function with
static shapes. Sample ``i`` uses the key ``fold_in(fold_in(rng, i), tile_index)``, so results do
not depend on ``batch_size``.

Large images are cut into tiles of ``tile x tile`` pixels whose origins lie on the 16-pixel
macroblock grid, neighbours overlapping by at least ``overlap`` pixels (images narrower than a
tile in one direction are edge-padded to the tile size). Each tile's output is
weighted by a feathered window: zero within ``overlap // 4`` pixels of an edge it shares with
another tile (where the convolutions' zero padding differs from the untiled network), rising
linearly to one over the middle half of the overlap. Every tile has the same shape, so one
compilation serves all tiles (and all large images); device memory is bounded by the tile size
times ``batch_size``. With noise, two tiles see different noise in their overlap, so in the
feathered band a sample is a blend of two samples (its per-pixel spread is up to 1/sqrt(2)
smaller there, at the band's centre).

Choosing ``overlap``: the discarded margin ``overlap // 4`` must cover the generator's
*effective* receptive field. The paper-size generator's theoretical field is ~700 pixels (347
3x3 convolutions at half resolution), but its residual branches are scaled by 0.2 per RDB and
RRDB, so the influence of far pixels decays quickly; the default ``overlap=64`` (16 pixels
discarded, 32 feathered) is the trade-off we use, and ``tile=1024`` keeps the overhead
(``(tile / (tile - overlap))**2 - 1``) at 14 % (see ``benchmarks/sampling.py``). Increase the
overlap if seams ever show with a particular checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jpeg_jax import export, jpeg, platform
from jpeg_jax.models import Generator, convert

GRID = 16  # tile origins and sizes: the 4:2:0 macroblock, the generator's padding multiple
DEFAULT_OVERLAP = 64
DEFAULT_BATCH_SIZE = 4
NOISE_SCALE = "noise_scale"  # the generator's parameter that multiplies every noise map


@dataclasses.dataclass(frozen=True)
class Restoration:
    """Posterior samples of one JPEG file.

    Attributes:
      samples: float32 ``(N, H, W, 3)`` RGB, stored (un-rotated) orientation. In [0, 1]; projected
        samples may leave [0, 1] slightly (clip and round them to save 8-bit images).
      mean: float32 ``(H, W, 3)`` per-pixel mean of the samples (the "-A" estimate), if asked.
      std: float32 ``(H, W, 3)`` per-pixel population std (``ddof=0``) of the samples, in [0, 1]
        units (x 255 for grey levels), if asked.
    """

    samples: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


def resolve_model(params_or_export: Any) -> tuple[Generator, Any]:
    """A ``(Generator, variables)`` pair from an export, an export path or a (module, params).

    An export is built with the implementation choices of
    :func:`jpeg_jax.platform.resolve_generator` for sampling on this backend (same samples as
    the exported module, up to float rounding); parameters are converted to the module's
    stacking (:func:`jpeg_jax.models.convert.to_stacking`) whichever stacking they come in.
    """
    if isinstance(params_or_export, str | os.PathLike):
        params_or_export = export.load(params_or_export)
    if isinstance(params_or_export, export.Exported):
        options = platform.resolve_generator(params_or_export.generator, inference=True)
        model, params = params_or_export.build(**options), params_or_export.params
    elif isinstance(params_or_export, tuple) and len(params_or_export) == 2:
        model, params = params_or_export
    else:
        raise TypeError(
            "restore() needs an export.Exported, an export directory or a (Generator, params) "
            f"pair, got {type(params_or_export).__name__}"
        )
    if not isinstance(model, Generator):
        raise TypeError(f"expected a Generator module, got {type(model).__name__}")
    params = params["params"] if set(params) == {"params"} else params
    if convert.is_stacked(params) != model.scan:
        params = convert.to_stacking(params, scan=model.scan)
    return model, {"params": params}


def scale_noise(variables: Any, temperature: float | jax.Array) -> Any:
    """``variables`` with every ``noise_scale`` leaf multiplied by ``temperature``.

    The generator with the result injects ``temperature`` times its noise (see the module
    docstring); works on plain or traced values, so a jitted caller compiles once for all
    temperatures.
    """

    def scale(path, value):
        last = path[-1] if path else None
        return value * temperature if getattr(last, "key", None) == NOISE_SCALE else value

    return jax.tree_util.tree_map_with_path(scale, variables)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ValueError unless it is finite and >= 0."""
    value = float(temperature)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    return value


@functools.partial(jax.jit, static_argnames=("model", "deterministic", "gray"))
def sample_tile(
    model: Generator,
    variables: Any,
    y: jax.Array,
    qtables: jax.Array,
    rng: jax.Array,
    indices: jax.Array,
    tile_index: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    deterministic: bool = False,
    gray: bool = False,
) -> jax.Array:
    """Samples of one tile, vmapped over the noise keys of the sample ``indices``.

    Args:
      model: the generator (static: a new module compiles anew).
      variables: ``{"params": ...}``.
      y: ``(h, w, 3)`` float32 decoded JPEG tile in [0, 1], ``h, w`` multiples of 16.
      qtables: ``(2, 8, 8)`` the file's tables (FiLM input; unused without FiLM).
      rng: the base key of the file.
      indices: ``(B,)`` int32 sample indices; sample ``i`` uses
        ``fold_in(fold_in(rng, i), tile_index)``.
      tile_index: scalar int32.
      temperature: scales the injected noise (traced: no recompilation per value).
      deterministic: the noise-free "mean path" of the generator.
      gray: average the output channels (grayscale files).

    Returns:
      ``(B, h, w, 3)`` float32 samples clipped to [0, 1].
    """
    tables = qtables[None] if model.film else None
    variables = scale_noise(variables, temperature)

    def one(index):
        key = jax.random.fold_in(jax.random.fold_in(rng, index), tile_index)
        out = model.apply(
            variables, y[None], tables, deterministic=deterministic, rngs={"noise": key}
        )
        return out[0]

    out = jnp.clip(jax.vmap(one)(indices), 0.0, 1.0)
    if gray:
        out = jnp.broadcast_to(out.mean(axis=-1, keepdims=True), out.shape)
    return out


@functools.cache
def _jitted_apply(model: Generator):
    """``jit(apply)(params, y, qtables, key)``, compiled once per module and shape (params and
    inputs are arguments, not constants for XLA to fold)."""
    return jax.jit(lambda p, y, q, k: model.apply({"params": p}, y, q, rngs={"noise": k}))


def sample_batch(
    model: Generator, params: Any, y: Any, qtables: Any, key: jax.Array, num_samples: int
) -> np.ndarray:
    """Samples of a batch of decoded JPEGs, one generator call per noise key (training's view).

    Sample ``s`` uses ``jax.random.split(key, num_samples)[s]`` for the whole batch, the keys of
    :func:`jpeg_jax.losses.draw_samples` (the moment penalties, vmapped inside the train step);
    the held-out evaluation of the training loop draws its samples here. Files are restored
    with :func:`restore` (per-sample ``fold_in`` keys, tiles).

    Args:
      model: the generator.
      params: its parameter tree (host or device).
      y: ``(B, H, W, 3)`` float32 decoded JPEGs in [0, 1], ``H, W`` multiples of 16.
      qtables: ``(B, 2, 8, 8)`` the files' tables.
      key: PRNG key.
      num_samples: S >= 1.

    Returns:
      ``(S, B, H, W, 3)`` float32 samples clipped to [0, 1].
    """
    apply = _jitted_apply(model)
    keys = jax.random.split(key, num_samples)
    return np.clip(np.stack([np.asarray(apply(params, y, qtables, k)) for k in keys]), 0.0, 1.0)


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Origins (multiples of 16) of ``tile``-sized tiles covering ``[0, length)``.

    ``length``, ``tile`` and ``overlap`` are multiples of 16; consecutive tiles overlap by at
    least ``overlap`` and the last tile ends at ``length``. A single tile when ``length <= tile``.
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile  # spacing span / (count - 1) <= tile - overlap, flooring keeps that
    return [(i * span // (count - 1)) // GRID * GRID for i in range(count)]


def feather_weights(start: int, size: int, length: int, overlap: int) -> np.ndarray:
    """1-D blending window of the tile ``[start, start + size)`` inside ``[0, length)``.

    Zero within ``overlap // 4`` pixels of an edge shared with another tile, a linear ramp over
    the next ``overlap - 2 * (overlap // 4)`` pixels, one elsewhere (and at image borders).
    Windows of two tiles overlapping by exactly ``overlap`` sum to one.
    """
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    centres = np.arange(size, dtype=np.float64) + 0.5
    w = np.ones(size)
    if start > 0:
        w *= np.clip((centres - margin) / ramp, 0.0, 1.0)
    if start + size < length:
        w *= np.clip((size - centres - margin) / ramp, 0.0, 1.0)
    return w


def _check_tiling(tile: int | None, overlap: int) -> None:
    if overlap < 0 or overlap % GRID:
        raise ValueError(f"overlap must be a non-negative multiple of {GRID}, got {overlap}")
    if tile is not None and (tile <= 0 or tile % GRID or tile < 2 * overlap or tile == overlap):
        raise ValueError(
            f"tile must be a positive multiple of {GRID} and at least 2 * overlap "
            f"(overlap={overlap}), got {tile}"
        )


def decoded_inputs(source: Any, qtables: Any = None, subsampling: str | None = None):
    """What the generator needs from :func:`restore`'s ``source`` (same arguments).

    Returns:
      ``(pixels, qtables, subsampling, image)``: float32 ``(H, W, 3)`` in [0, 1], the
      ``(2, 8, 8)`` tables, the subsampling name, and the ``JpegImage`` (None for pixel input).
    """
    if isinstance(source, jpeg.JpegImage):
        return source.pixels / np.float32(255.0), source.qtables, source.subsampling, source
    pixels = np.asarray(source)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be (H, W, 3), got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        pixels = pixels / np.float32(255.0)
    if qtables is None:
        raise ValueError("qtables are required unless a JpegImage is given")
    return pixels.astype(np.float32), np.asarray(qtables), subsampling or "4:2:0", None


def _assemble(model, variables, y, qtables, num_samples, rng, tile, overlap, batch_size, **kw):
    """Tiled (or single-tile) sampling of the 16-padded image ``y`` -> (N, Hp, Wp, 3)."""
    hp, wp = y.shape[:2]
    th, tw = min(tile or hp, hp), min(tile or wp, wp)
    acc = np.zeros((num_samples, hp, wp, 3), np.float32)
    weight_sum = np.zeros((hp, wp, 1), np.float32)
    batches = [
        range(s, min(s + batch_size, num_samples)) for s in range(0, num_samples, batch_size)
    ]
    origins = itertools.product(tile_origins(hp, th, overlap), tile_origins(wp, tw, overlap))
    for tile_index, (top, left) in enumerate(origins):
        wy, wx = feather_weights(top, th, hp, overlap), feather_weights(left, tw, wp, overlap)
        window = np.outer(wy, wx).astype(np.float32)[..., None]
        crop = jnp.asarray(y[top : top + th, left : left + tw])
        for batch in batches:
            indices = np.arange(batch.start, batch.start + batch_size, dtype=np.int32)
            out = sample_tile(
                model, variables, crop, qtables, rng, indices, np.int32(tile_index), **kw
            )
            acc[batch.start : batch.stop, top : top + th, left : left + tw] += (
                window * np.asarray(out)[: len(batch)]
            )
        weight_sum[top : top + th, left : left + tw] += window
    acc /= weight_sum
    return acc


_project = jax.jit(jpeg.project, static_argnames=("subsampling", "max_iterations"))


def project_exact(
    sample: np.ndarray,
    image: jpeg.JpegImage,
    *,
    box: tuple[int, int, int, int] | None = None,
    max_iterations: int = 1000,
) -> np.ndarray:
    """:func:`jpeg.project` of one ``(H, W, 3)`` image, iterating only where it must.

    Projection is local to MCUs. For whole MCUs one pass is exact; the last partial MCU row and
    column (libjpeg pads them by replication) need many passes (hundreds for a random start),
    which run on those strips alone (a strip starting on the MCU grid is a JPEG of its own with
    the file's blocks); a final pass over the whole region fixes coefficients on a bin edge.

    Args:
      sample: float32 ``(H, W, 3)``, the file's size.
      image: the file.
      box: ``(top, left, bottom, right)``: project only these pixels (the rest is returned as
        is). ``top``/``left`` on the MCU grid (multiples of 16 always are), ``bottom``/``right``
        on it too or at the image's edge. Default: the whole image.
      max_iterations: bound on the passes of a partial-MCU strip.

    Returns:
      float32 ``(H, W, 3)``, every coefficient of the region in its bin (not clipped/rounded).
    """
    h, w = sample.shape[:2]
    r0, c0, r1, c1 = (0, 0, h, w) if box is None else box
    fh, fv = jpeg.SUBSAMPLING[image.subsampling] or (1, 1)
    edges = (r1 == h or r1 % (8 * fv) == 0) and (c1 == w or c1 % (8 * fh) == 0)
    if r0 % (8 * fv) or c0 % (8 * fh) or not edges or not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise ValueError(f"box {box} is not on the file's MCU grid inside {h}x{w}")
    top = r0 + (r1 - r0) // (8 * fv) * 8 * fv
    left = c0 + (c1 - c0) // (8 * fh) * 8 * fh
    out = np.array(sample, dtype=np.float32)
    for r, c in (((r0, top), (c0, left)), ((r0, top), (left, c1)), ((top, r1), (c0, c1))):
        if r[1] > r[0] and c[1] > c[0]:
            out[r[0] : r[1], c[0] : c[1]] = _project_region(
                out, image, (r[0], r[1], c[0], c[1]), max_iterations
            )
    # Float rounding differs between a strip and the whole image: a coefficient that was a hair
    # inside its bin may end a hair outside. A pass over the whole region moves only those.
    out[r0:r1, c0:c1] = _project_region(out, image, (r0, r1, c0, c1), max_iterations)
    return out


def _project_region(sample, image, box, max_iterations):
    r0, r1, c0, c1 = box
    fh, fv = jpeg.SUBSAMPLING[image.subsampling] or (1, 1)
    grids = jpeg.block_grid((r1 - r0, c1 - c0), image.subsampling)
    sliced = []
    for name, full in zip(("y", "cb", "cr"), image.coefficients):
        if full is None:
            sliced.append(None)
            continue
        sh, sw = (1, 1) if name == "y" else (fv, fh)
        b0, b1 = r0 // (8 * sh), c0 // (8 * sw)
        rows, cols = grids[name]
        sliced.append(jnp.asarray(full[b0 : b0 + rows, b1 : b1 + cols]))
    return np.asarray(
        _project(
            jnp.asarray(sample[r0:r1, c0:c1]),
            jpeg.Coefficients(*sliced),
            jnp.asarray(image.qtables),
            subsampling=image.subsampling,
            max_iterations=max_iterations,
        )
    )


def restore(
    params_or_export: Any,
    source: jpeg.JpegImage | np.ndarray,
    num_samples: int,
    rng: jax.Array,
    *,
    qtables: np.ndarray | None = None,
    subsampling: str | None = None,
    project: bool = False,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    temperature: float = 1.0,
    deterministic: bool = False,
    return_mean: bool = False,
    return_std: bool = False,
) -> Restoration:
    """Draws ``num_samples`` posterior samples of one JPEG file.

    Args:
      params_or_export: an :class:`jpeg_jax.export.Exported`, an export directory, or a
        ``(Generator, params)`` pair.
      source: a :class:`jpeg_jax.jpeg.JpegImage` (``read_jpeg``), or the decoded JPEG's pixels
        ``(H, W, 3)`` (uint8, or float in [0, 1]) with ``qtables`` and ``subsampling``.
      num_samples: N >= 1.
      rng: a JAX PRNG key; the same key gives the same samples (for any ``batch_size``).
      qtables: ``(2, 8, 8)`` the file's tables, with pixel input (FiLM conditioning).
      subsampling: with pixel input, "4:4:4", "4:2:2", "4:2:0" (default), "4:4:0" or "gray".
      project: move every sample onto the set of images consistent with the file (the file's
        exact coefficients, :func:`jpeg_jax.jpeg.project`): 100 % of the coefficients in their
        quantization bins before 8-bit rounding. Needs a ``JpegImage``.
      tile: tile size in pixels (multiple of 16, >= 2 * overlap); None, or an image that fits
        in one tile: the whole image at once. A tiled image narrower than ``tile`` in one
        direction is edge-padded to ``tile`` there, so all tiles of all images share one shape.
      overlap: minimum overlap of neighbouring tiles (multiple of 16; see the module docstring).
      batch_size: samples per generator call (vmapped); memory grows linearly with it.
      temperature: tau >= 0, the factor on the injected noise: 0 is the deterministic path (every
        sample identical), 1 the model's posterior; larger values give more diverse samples
        (see the module docstring). Any value uses the same compiled function.
      deterministic: noise-free generator (every sample identical; for tests and MMSE models);
        the same as ``temperature=0``.
      return_mean: also return the per-pixel mean of the samples.
      return_std: also return the per-pixel standard deviation of the samples.

    Returns:
      A :class:`Restoration`; grayscale files give three equal channels.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}"
        )
    _check_tiling(tile, overlap)
    temperature = check_temperature(temperature)
    model, variables = resolve_model(params_or_export)
    pixels, tables, subsampling, image = decoded_inputs(source, qtables, subsampling)
    if project and image is None:
        raise ValueError("project=True needs a JpegImage (the file's exact coefficients)")
    h, w = pixels.shape[:2]
    hp, wp = h + -h % GRID, w + -w % GRID
    if tile is not None and max(hp, wp) > tile:  # every tile full size: one compilation
        hp, wp = max(hp, tile), max(wp, tile)
    else:
        tile = None
    padded = np.pad(pixels, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    batch_size = min(batch_size, num_samples)
    samples = _assemble(
        model,
        variables,
        padded,
        jnp.asarray(tables, jnp.int32),
        num_samples,
        rng,
        tile,
        overlap,
        batch_size,
        temperature=np.float32(temperature),
        deterministic=deterministic or temperature == 0,
        gray=subsampling == "gray",
    )[:, :h, :w]
    if project:
        for i in range(num_samples):
            samples[i] = project_exact(samples[i], image)
    mean = samples.mean(axis=0) if return_mean else None
    std = samples.std(axis=0) if return_std else None
    return Restoration(samples, mean, std)

"""Figures as the appendix draws them: realisations, uncertainty and recompression differences.

- :func:`realisations_figure`: JPEG input, samples, their mean, the original; with an MMSE
  estimate X̄(Y) a second row as Figure 6: X̄(Y), the variance estimate (x - X̄(Y))^2 and the
  samples' per-pixel variance, both variance maps as their 8th root on one colour scale.
- :func:`uncertainty_figure`: per-pixel standard deviation as its 4th root (Figures 6 and 9).
- :func:`difference_figure`: |JPEG(restoration) - y| as its 4th root (Figure 8).

Maps are grey with a colour bar in grey levels (8-bit units); white is low, black high, as the
appendix's maps.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jpeg_jax import fileio, pictures  # noqa: E402


def _save(fig, path: str) -> str:
    """Write atomically (temporary file + rename) so a figure is never half-written."""
    with fileio.atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _grey(value: np.ndarray) -> np.ndarray:
    """(H, W) map: the mean over colour channels of (H, W, C) values."""
    value = np.asarray(value, np.float64)
    return value.mean(axis=-1) if value.ndim == 3 else value


def _rooted_map(fig, ax, value, root: int, label: str | None, vmax: float | None = None):
    """``value ** (1 / root)`` in grey (white low, black high), a colour bar in ``value`` units
    unless ``label`` is None."""
    shown = pictures.rooted_level(value, root)
    top = None if vmax is None else max(vmax, 1e-12) ** (1.0 / root)
    im = ax.imshow(shown, cmap="gray_r", vmin=0.0, vmax=top)
    ax.axis("off")
    if label is None:
        return im
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    low, high = im.norm.vmin, im.norm.vmax
    ticks = [t for t in bar.get_ticks() if low <= t <= high]  # others would stretch the bar
    bar.set_ticks(ticks, labels=[f"{t**root:.2g}" for t in ticks])
    bar.set_label(label, fontsize=8)
    return im


def realisations_figure(
    y: np.ndarray,
    samples: np.ndarray,
    x: np.ndarray | None,
    path: str,
    *,
    mean: np.ndarray | None = None,
    mean_count: int | None = None,
    titles: dict[str, str] | None = None,
    mmse: np.ndarray | None = None,
    sample_variance: np.ndarray | None = None,
) -> str:
    """JPEG input, samples, their mean, the original (images float (H, W, 3) in [0, 1]).

    Args:
      y: the decoded JPEG.
      samples: (S, H, W, 3) posterior samples.
      x: the original, if known.
      path: PNG to write.
      mean: the samples' mean (computed when omitted).
      mean_count: how many samples ``mean`` averages (default: ``len(samples)``).
      titles: optional extra text per panel ("y", "sample0", ..., "mean", "x").
      mmse: an MMSE estimate X̄(Y) (a regression model's output). With ``x``, adds Figure 6's
        row: X̄(Y), ``(x - X̄(Y))^2`` (a one-sample estimate of the posterior variance) and, if
        given, ``sample_variance``, both in grey levels^2 shown as their 8th root.
      sample_variance: (H, W[, 3]) per-pixel variance of the samples in grey levels^2 (e.g.
        over all samples, not only the ones shown).
    """
    titles = titles or {}
    mean = samples.mean(axis=0) if mean is None else mean
    panels = [("y", "JPEG input", y)]
    panels += [(f"sample{i}", f"sample {i + 1}", s) for i, s in enumerate(samples)]
    panels += [("mean", f"mean of {mean_count or len(samples)}", mean)]
    if x is not None:
        panels += [("x", "original", x)]
    second_row = mmse is not None and x is not None
    rows = 2 if second_row else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(3 * len(panels), 3.4 * rows))
    axes = np.atleast_2d(axes)
    for ax, (key, title, image) in zip(axes[0], panels):
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(title + (f"\n{titles[key]}" if key in titles else ""), fontsize=9)
        ax.axis("off")
    if second_row:
        _variance_row(fig, axes[1], x, mmse, sample_variance)
    return _save(fig, path)


def _variance_row(fig, axes, x, mmse, sample_variance) -> None:
    """Figure 6's comparison: X̄(Y), (x - X̄(Y))^2 and the samples' variance, 8th roots."""
    estimate = _grey(np.square((np.asarray(x, np.float64) - mmse) * 255.0))
    maps = [("(x - X̄(Y))², variance estimate", estimate)]
    if sample_variance is not None:
        maps.append(("variance of the samples", _grey(sample_variance)))
    vmax = max(float(value.max()) for _, value in maps)  # one scale for both maps
    axes[0].imshow(np.clip(mmse, 0, 1), interpolation="nearest")
    axes[0].set_title("MMSE estimate X̄(Y)", fontsize=9)
    axes[0].axis("off")
    for i, (ax, (title, value)) in enumerate(zip(axes[1:], maps)):
        last = i == len(maps) - 1  # one scale: one colour bar, beside the last map
        _rooted_map(fig, ax, value, 8, "grey levels², shown as ^(1/8)" if last else None, vmax)
        ax.set_title(title, fontsize=9)
    for ax in axes[1 + len(maps) :]:
        ax.axis("off")


def uncertainty_figure(std: np.ndarray, path: str, *, root: int = 4) -> str:
    """Per-pixel standard deviation over samples (8-bit units) as ``std ** (1 / root)``.

    As the appendix's Figures 6 and 9 (Figure 6 shows the 8th root of the variance, i.e. the 4th
    root of the std): white is certain, black uncertain; a colour bar gives the std in grey levels.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4))
    _rooted_map(fig, ax, std, root, f"per-pixel std (grey levels), shown as std^(1/{root})")
    return _save(fig, path)


def difference_figure(
    a: np.ndarray, b: np.ndarray, path: str, *, title: str = "", root: int = 4
) -> str:
    """``|a - b|`` in grey levels (mean over RGB) shown as its ``root``-th root (Figure 8: 4th).

    E.g. a restoration's libjpeg recompression against the JPEG decode ``y``: zero (white)
    where the restoration is consistent with the file.
    """
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=-1) * 255
    fig, ax = plt.subplots(figsize=(4.5, 4))
    _rooted_map(fig, ax, diff, root, f"|difference| (grey levels), shown as ^(1/{root})")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)

"""Figures: realisation grids, per-pixel uncertainty maps and recompression differences."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
    """Write atomically (temporary file + rename) so a figure is never half-written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def realisations_figure(
    y: np.ndarray,
    samples: np.ndarray,
    x: np.ndarray | None,
    path: str,
    *,
    mean: np.ndarray | None = None,
    mean_count: int | None = None,
    titles: dict[str, str] | None = None,
) -> str:
    """One row: JPEG input, samples, their mean, the original (images float (H, W, 3) in [0, 1]).

    Args:
      y: the decoded JPEG.
      samples: (S, H, W, 3) posterior samples.
      x: the original, if known.
      path: PNG to write.
      mean: the samples' mean (computed when omitted).
      mean_count: how many samples ``mean`` averages (default: ``len(samples)``).
      titles: optional extra text per panel ("y", "sample0", ..., "mean", "x").
    """
    titles = titles or {}
    mean = samples.mean(axis=0) if mean is None else mean
    panels = [("y", "JPEG input", y)]
    panels += [(f"sample{i}", f"sample {i + 1}", s) for i, s in enumerate(samples)]
    panels += [("mean", f"mean of {mean_count or len(samples)}", mean)]
    if x is not None:
        panels += [("x", "original", x)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.4))
    for ax, (key, title, image) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(title + (f"\n{titles[key]}" if key in titles else ""), fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def uncertainty_figure(std: np.ndarray, path: str, *, root: int = 4) -> str:
    """Per-pixel standard deviation over samples (8-bit units) as ``std ** (1 / root)``.

    As the appendix's Figure 6 (which shows the 8th root of the variance, i.e. the 4th root of
    the std): white is certain, black uncertain; a colour bar gives the std in grey levels.
    """
    value = np.asarray(std, np.float64)
    if value.ndim == 3:
        value = value.mean(axis=-1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(value ** (1.0 / root), cmap="gray_r")
    ax.axis("off")
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    ticks = bar.get_ticks()
    bar.set_ticks(ticks, labels=[f"{t**root:.2g}" for t in ticks])
    bar.set_label(f"per-pixel std (grey levels), shown as std^(1/{root})")
    return _save(fig, path)


def difference_figure(a: np.ndarray, b: np.ndarray, path: str, *, title: str = "") -> str:
    """``|a - b|`` in grey levels (mean over RGB), e.g. a restoration's recompression vs y."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=-1) * 255
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(diff, cmap="magma")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046).set_label("|difference| (grey levels)")
    return _save(fig, path)

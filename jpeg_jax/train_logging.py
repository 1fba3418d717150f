"""Training logs through ``clu.metric_writers``, written by the chief (process 0) only.

The chief writes every scalar to the log, to TensorBoard events in ``WORKDIR/tensorboard`` and
as JSON lines to ``WORKDIR/metrics.jsonl`` (one ``{"step": N, name: value, ...}`` object per
write; images go to TensorBoard). Other processes only log, as in the Flax examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from clu import metric_writers


class JsonlWriter(metric_writers.MetricWriter):
    """A ``MetricWriter`` that appends scalars as JSON lines; other kinds are not kept."""

    def __init__(self, path: str):
        self._file = open(path, "a")  # noqa: SIM115 (closed by close())

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        self._file.write(json.dumps({"step": int(step), **values}) + "\n")
        self._file.flush()  # readers (tests, dashboards) follow the file while training runs

    def write_summaries(self, step, values, metadata=None) -> None:
        del step, values, metadata

    def write_images(self, step, images) -> None:
        del step, images

    def write_videos(self, step, videos) -> None:
        del step, videos

    def write_audios(self, step, audios, *, sample_rate) -> None:
        del step, audios, sample_rate

    def write_texts(self, step, texts) -> None:
        del step, texts

    def write_histograms(self, step, arrays, num_buckets=None) -> None:
        del step, arrays, num_buckets

    def write_hparams(self, hparams) -> None:
        del hparams

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def create_writer(workdir: str, *, is_chief: bool) -> metric_writers.MetricWriter:
    """The chief's log + TensorBoard + JSONL writer (asynchronous), or a log-only writer."""
    if not is_chief:
        return metric_writers.create_default_writer(just_logging=True)
    return metric_writers.AsyncMultiWriter(
        [
            metric_writers.LoggingWriter(),
            metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")),
            JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
        ]
    )


def image_grid(batch: Mapping[str, np.ndarray], samples: np.ndarray, n: int = 4) -> np.ndarray:
    """Rows y | up to 3 samples | x of the first ``n`` images, as one (1, H', W', 3) image.

    Args:
      batch: ``x`` and ``y``, (B, H, W, 3) in [0, 1].
      samples: (S, B, H, W, 3) restorations of ``y``, in [0, 1].
    """
    n = min(n, batch["x"].shape[0])
    rows = [batch["y"][:n], *samples[:3, :n], batch["x"][:n]]
    return np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)[None]

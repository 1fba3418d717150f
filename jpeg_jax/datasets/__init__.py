"""Image sources for the input pipeline: embedded photos, a folder, TFDS, FFHQ.

:func:`open_source` turns ``config.data`` into a :class:`Source`, one process's disjoint shard
of a split in a fixed order. Folder and embedded sources are random access (file paths or
encoded bytes in memory, so the pipeline can shuffle globally and restart anywhere in O(1));
TFDS sources (FFHQ included) are streams read in stored order.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from jpeg_jax.datasets import embedded, folder, subsets

SOURCES = ("embedded", "folder", "tfds", "ffhq")


@dataclasses.dataclass(frozen=True)
class Source:
    """One process's shard of an image split, in a fixed order.

    Attributes:
      num_examples: images in this shard.
      names: display names in order (random-access sources only, else ``None``).
      items: random-access sources: 1-D numpy array of file paths or of encoded image bytes.
      items_are_paths: whether ``items`` holds paths (read with ``tf.io.read_file``).
      stream: streaming sources: a function returning a ``tf.data.Dataset`` of dicts
        ``name`` / ``data`` (encoded bytes) for one pass over the shard, same order every call.
    """

    num_examples: int
    names: tuple[str, ...] | None = None
    items: np.ndarray | None = None
    items_are_paths: bool = False
    stream: Callable[[], tf.data.Dataset] | None = None

    def ordered(self) -> tf.data.Dataset:
        """One pass in the fixed order, as dicts ``name`` and ``data`` (encoded bytes)."""
        if self.stream is not None:
            return self.stream()
        dataset = tf.data.Dataset.from_tensor_slices({"name": list(self.names), "data": self.items})
        if self.items_are_paths:
            dataset = dataset.map(
                lambda ex: {"name": ex["name"], "data": tf.io.read_file(ex["data"])}
            )
        return dataset


def open_source(
    config_data,
    split: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    max_examples: int | None = None,
    subset: str = "",
) -> Source:
    """This process's shard of ``split`` of the source named by ``config_data.source``.

    Shards are disjoint: random-access sources take every ``process_count``-th item starting at
    ``process_index``; TFDS sources use ``tfds.even_splits``. ``max_examples`` keeps the first
    images of the split (before sharding), e.g. for a short evaluation.

    ``subset`` (a name of :data:`subsets.SUBSETS` such as ``"ctest10k"``, or a list file; see
    :func:`subsets.load_names`) keeps only the split's images with those file names, in the
    split's order, before ``max_examples`` and sharding. Folder and embedded sources match the
    base name of each path; TFDS sources the dataset's ``file_name`` feature. For a TFDS source
    ``num_examples`` is then the number of listed names (images absent from the split are
    simply not produced; :func:`jpeg_jax.evaluate.evaluate` reports the number it evaluated).
    """
    kind = config_data.source
    wanted = set(subsets.load_names(subset)) if subset else None
    if kind in ("tfds", "ffhq"):
        return _tfds_source(config_data, split, process_index, process_count, max_examples, wanted)
    if kind == "embedded":
        names, items = embedded.encoded_split(split)
        items_are_paths = False
    elif kind == "folder":
        names = folder.list_images(config_data.path, split, config_data.test_fraction)
        items = [os.path.join(config_data.path, name) for name in names]
        items_are_paths = True
    else:
        raise ValueError(f"config.data.source must be one of {SOURCES}, got {kind!r}")
    if wanted is not None:
        keep = [i for i, name in enumerate(names) if subsets.base_name(name) in wanted]
        names, items = [names[i] for i in keep], [items[i] for i in keep]
    names, items = names[:max_examples], items[:max_examples]
    names, items = names[process_index::process_count], items[process_index::process_count]
    if kind == "folder" and config_data.check_files:
        kept, _ = folder.drop_unreadable(config_data.path, names)
        keep = set(kept)
        items = [item for name, item in zip(names, items, strict=True) if name in keep]
        names = kept
    if not names:
        raise ValueError(
            f"no images in split {split!r} of {kind} source for process {process_index}"
        )
    return Source(len(names), tuple(names), np.array(items, dtype=object), items_are_paths)


def _tfds_source(config_data, split, process_index, process_count, max_examples, wanted):
    from jpeg_jax.datasets import tfds_source

    if config_data.source == "ffhq":
        name, image_key = f"ffhq/{config_data.ffhq_resolution}", "image"
    else:
        name, image_key = config_data.tfds_name, config_data.image_key
    builder = tfds_source.load_builder(
        name, data_dir=config_data.tfds_data_dir or None, manual_dir=config_data.manual_dir
    )
    if wanted is not None:
        stream = tfds_source.subset_stream(
            builder,
            split,
            image_key,
            wanted,
            process_index=process_index,
            process_count=process_count,
            max_examples=max_examples,
        )
        count = len(wanted) if max_examples is None else min(len(wanted), max_examples)
        shard = len(range(process_index, count, process_count))
        return Source(shard, stream=stream)
    sub, count = tfds_source.process_split(
        builder,
        split,
        process_index=process_index,
        process_count=process_count,
        max_examples=max_examples,
    )
    return Source(count, stream=lambda: tfds_source.stream(builder, sub, image_key))

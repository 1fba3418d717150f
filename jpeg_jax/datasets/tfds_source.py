"""TFDS datasets as image sources: any dataset with an image feature, and the FFHQ builder."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from jpeg_jax.datasets import ffhq  # noqa: F401 -- registers "ffhq" with TFDS


def load_builder(
    name: str, *, data_dir: str | None = None, manual_dir: str | None = None
) -> tfds.core.DatasetBuilder:
    """A prepared TFDS builder: ``name`` like ``"div2k/bicubic_x2"``, ``"imagenet2012"`` or
    ``"ffhq/128"`` (jpeg_jax's :class:`~jpeg_jax.datasets.ffhq.Ffhq`, registered on import).

    Prepares the dataset if it is not (downloading if TFDS can, reading ``manual_dir`` for
    manual datasets), like ``tfds.load``.
    """
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
        builder.download_and_prepare(download_config=download_config)
    return builder


def process_split(
    builder: tfds.core.DatasetBuilder,
    split: str,
    *,
    process_index: int,
    process_count: int,
    max_examples: int | None = None,
) -> tuple[str, int]:
    """This process's disjoint part of a split (TFDS split string) and its example count."""
    if max_examples is not None:
        total = builder.info.splits[split].num_examples
        split = f"{split}[:{min(total, max_examples)}]"
    sub = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
    return sub, builder.info.splits[sub].num_examples


def stream(builder: tfds.core.DatasetBuilder, split: str, image_key: str) -> tf.data.Dataset:
    """Encoded images of a split in stored order: dicts ``name`` (tfds id) and ``data`` (bytes)."""
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(add_tfds_id=True),
    )
    return dataset.map(lambda ex: {"name": ex["tfds_id"], "data": ex[image_key]})

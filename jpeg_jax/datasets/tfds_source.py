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


FILE_NAME_KEY = "file_name"  # the feature subsets match (imagenet2012 has it)


def subset_stream(
    builder: tfds.core.DatasetBuilder,
    split: str,
    image_key: str,
    names: set[str] | frozenset[str],
    *,
    process_index: int,
    process_count: int,
    max_examples: int | None = None,
):
    """A function returning one pass over the split's images whose file name is in ``names``.

    The whole split is read in stored order (images are not decoded), filtered on the base name
    of the ``file_name`` feature, cut to ``max_examples`` and then sharded (every
    ``process_count``-th image from ``process_index``). Dicts ``name`` (the file name) and
    ``data`` (encoded bytes).

    Raises:
      ValueError: the dataset has no ``file_name`` feature.
    """
    if FILE_NAME_KEY not in builder.info.features:
        raise ValueError(
            f"a subset needs a {FILE_NAME_KEY!r} feature to match, and TFDS dataset "
            f"{builder.info.full_name!r} has none (features: {sorted(builder.info.features)})"
        )
    keys = tf.constant(sorted(names))

    def one_pass() -> tf.data.Dataset:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0
        )
        dataset = builder.as_dataset(
            split=split,
            shuffle_files=False,
            decoders={image_key: tfds.decode.SkipDecoding()},
        )
        dataset = dataset.map(
            lambda ex: {
                "name": tf.strings.regex_replace(ex[FILE_NAME_KEY], r"^.*[/\\]", ""),
                "data": ex[image_key],
            }
        )
        dataset = dataset.filter(lambda ex: table.lookup(ex["name"]) > 0)
        if max_examples is not None:
            dataset = dataset.take(max_examples)
        return dataset.shard(process_count, process_index)

    return one_pass

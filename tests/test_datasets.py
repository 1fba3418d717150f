"""Tests of jpeg_jax.datasets: embedded photos, folder listing/split, FFHQ TFDS builder."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from jpeg_jax import input_pipeline
from jpeg_jax.datasets import embedded, ffhq, folder, open_source

# --- embedded -----------------------------------------------------------------------------


def test_embedded_photos_load_offline_with_disjoint_splits():
    import skimage.data

    train, test = embedded.split_names("train"), embedded.split_names("test")
    assert not set(train) & set(test) and set(train) | set(test) == set(embedded.PHOTOS)
    assert test == ("astronaut",)
    for name, image in embedded.load_split("all"):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 128
        if name == "coffee":
            np.testing.assert_array_equal(image, skimage.data.coffee())
    with pytest.raises(ValueError, match="unknown embedded split"):
        embedded.split_names("validation")


def test_embedded_bytes_decode_to_the_photos():
    names, blobs = embedded.encoded_split("test")
    decoded = tf.io.decode_image(blobs[0], channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(decoded, embedded.load_photo(names[0]))


# --- folder -------------------------------------------------------------------------------


def test_folder_lists_recursively_with_a_stable_split(tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for k in range(60):
        sub = tmp_path / f"d{k % 3}" / ("deep" if k % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        ext = ["png", "JPG", "bmp", "webp"][k % 4]
        image = rng.integers(0, 256, (9, 11, 3), np.uint8)
        Image.fromarray(image).save(sub / f"im{k}.{ext}")
        names.append((sub / f"im{k}.{ext}").relative_to(tmp_path).as_posix())
    (tmp_path / "notes.txt").write_text("not an image")
    everything = folder.list_images(tmp_path, "all")
    assert everything == sorted(names)
    train = folder.list_images(tmp_path, "train", test_fraction=0.3)
    test = folder.list_images(tmp_path, "test", test_fraction=0.3)
    assert sorted(train + test) == everything and not set(train) & set(test)
    assert 5 <= len(test) <= 35  # ~binomial(60, 0.3)
    # The split is a property of each path: listing a subset keeps every file's side.
    for name in everything:
        assert folder.in_test_split(name, 0.3) == (name in test)
    assert folder.list_images(tmp_path, "test", test_fraction=0.0) == []


def test_folder_source_shards_and_webp_decode(tmp_path):
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    for k in range(5):
        Image.fromarray(image).save(tmp_path / f"{k}.webp", lossless=True)
    config = input_pipeline.default_data_config()
    config.source, config.path = "folder", str(tmp_path)
    shards = [open_source(config, "all", process_index=i, process_count=2).names for i in range(2)]
    assert shards == [("0.webp", "2.webp", "4.webp"), ("1.webp", "3.webp")]
    first = next(iter(open_source(config, "all").ordered()))
    np.testing.assert_array_equal(
        tf.io.decode_image(first["data"], channels=3, expand_animations=False).numpy(), image
    )


# --- FFHQ ---------------------------------------------------------------------------------


def _face(index, side):
    """A smooth, index-dependent fake face (compresses well, so writing 1024 px is fast)."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :]], -1)
    image = np.concatenate([image, np.full((side, side, 1), index % 256, np.float32)], -1)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def fake_ffhq(tmp_path_factory):
    """Official layout: thumbnails128x128/ and images1024x1024/ in per-thousand folders."""
    manual = tmp_path_factory.mktemp("ffhq_manual")
    for index in (0, 1, 2, 60000, 69999):
        sub = manual / "thumbnails128x128" / f"{index // 1000 * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_face(index, 128)).save(sub / f"{index:05d}.png")
    for index in (5, 60001):
        sub = manual / "images1024x1024" / f"{index // 1000 * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_face(index, 1024)).save(sub / f"{index:05d}.png", compress_level=1)
    return manual, tmp_path_factory.mktemp("tfds")


def test_ffhq_split_rule():
    assert ffhq.split_of(0) == ffhq.split_of(59_999) == "train"
    assert ffhq.split_of(60_000) == ffhq.split_of(69_999) == "test"
    with pytest.raises(ValueError):
        ffhq.split_of(70_000)


def test_ffhq128_builder_from_thumbnails(fake_ffhq):
    manual, data_dir = fake_ffhq
    builder = ffhq.Ffhq(config="128", data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["test"].num_examples == 2
    test = list(builder.as_dataset(split="test").as_numpy_iterator())
    assert sorted(ex["index"] for ex in test) == [60000, 69999]
    for ex in test:
        np.testing.assert_array_equal(ex["image"], _face(int(ex["index"]), 128))


def test_ffhq1024_builder_and_downsampling_fallback(fake_ffhq, tmp_path):

    manual, _ = fake_ffhq
    config = tfds.download.DownloadConfig(manual_dir=str(manual))
    big = ffhq.Ffhq(config="1024", data_dir=str(tmp_path))
    big.download_and_prepare(download_config=config)
    (ex,) = big.as_dataset(split="train").as_numpy_iterator()
    assert ex["index"] == 5 and ex["image"].shape == (1024, 1024, 3)
    np.testing.assert_array_equal(ex["image"], _face(5, 1024))
    # Without thumbnails, ffhq/128 downsamples the 1024 images with Pillow's Lanczos.
    only_big = tmp_path / "only_big"
    only_big.mkdir()
    (only_big / "images1024x1024").symlink_to(manual / "images1024x1024")
    small = ffhq.Ffhq(config="128", data_dir=str(tmp_path / "small"))
    small.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=only_big))
    (ex,) = small.as_dataset(split="test").as_numpy_iterator()
    reference = Image.fromarray(_face(60001, 1024)).resize((128, 128), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(ex["image"], np.asarray(reference))


def test_ffhq_source_pipelines_shard_and_restart(fake_ffhq):
    manual, data_dir = fake_ffhq
    config = input_pipeline.default_data_config()
    config.update(source="ffhq", manual_dir=str(manual), tfds_data_dir=str(data_dir), patch_size=32)
    counts = [
        open_source(config, "train", process_index=i, process_count=2).num_examples
        for i in range(2)
    ]
    assert sorted(counts) == [1, 2]
    as_tfds = input_pipeline.default_data_config()
    as_tfds.update(source="tfds", tfds_name="ffhq/128", tfds_data_dir=str(data_dir))
    assert open_source(as_tfds, "test").num_examples == 2  # the generic TFDS path

    def run(start_step, n):
        it = input_pipeline.create_train_dataset(
            config,
            batch_size_per_process=2,
            seed=5,
            start_step=start_step,
            process_count=1,
            process_index=0,
        )
        return [next(it) for _ in range(n)]

    full, resumed = run(0, 5), run(3, 2)  # 10 examples over 3 training images: epochs cross
    for a, b in zip(full[3:], resumed, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Every patch is a crop of one of the three training faces: blue = index.
    blue = {int(v) for b in full for v in np.round(b["x"][:, 0, 0, 2] * 255)}
    assert blue == {0, 1, 2}
    (batch,) = input_pipeline.create_eval_dataset(
        config, batch_size=4, process_index=0, process_count=1
    )
    assert batch["x"].shape == (2, 128, 128, 3)
    assert sorted(np.round(batch["x"][:, 0, 0, 2] * 255).astype(int)) == [60000 % 256, 69999 % 256]
    decoded = np.asarray(Image.open(io.BytesIO(batch["jpeg"][0])).convert("RGB"))
    np.testing.assert_array_equal(np.round(batch["y"][0] * 255), decoded)

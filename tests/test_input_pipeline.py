"""Tests of jpeg_jax.input_pipeline and its tf.data transforms, against Pillow / libjpeg."""

import io
import itertools
import logging
import math

import jpeglib
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jpeg_jax import input_pipeline, jpeg
from jpeg_jax.datasets import transforms
from jpeg_jax.jpeg.tables import quality_to_qtables

P = 32  # patch size in tests


def _config(**overrides):
    config = input_pipeline.default_data_config()
    config.patch_size = P
    config.update(overrides)
    return config


def _natural(height, width):
    import skimage.data

    return np.ascontiguousarray(skimage.data.coffee()[:height, 100 : 100 + width])


def _pillow_jpeg(image, quality, subsampling=2):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def _pillow_decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


@pytest.fixture(scope="module")
def color_folder(tmp_path_factory):
    """Ten solid-colour PNGs (distinct red channel), so a patch tells which image it came from."""
    root = tmp_path_factory.mktemp("colors")
    for k in range(10):
        image = np.zeros((40 + k, 48, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = 20 * k + 5, 100, 200
        (root / f"sub{k % 2}").mkdir(exist_ok=True)
        Image.fromarray(image).save(root / f"sub{k % 2}" / f"img{k}.png")
    return root


# --- libjpeg degradation ------------------------------------------------------------------


@pytest.mark.parametrize("quality", [5, 10, 50])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_graph_jpeg_is_pillows_file(quality, subsampling, tmp_path):
    rng = np.random.default_rng(quality)
    pil_sub = {"4:2:0": 2, "4:4:4": 0}[subsampling]
    for image in (_natural(37, 53), rng.integers(0, 256, (16, 24, 3), np.uint8)):
        out = transforms.tf_degrade(tf.constant(image), tf.constant(quality), subsampling)
        expected = _pillow_jpeg(image, quality, pil_sub)
        assert out["jpeg"].numpy() == expected  # byte-identical file
        np.testing.assert_array_equal(out["y"].numpy(), _pillow_decode(expected))
        (tmp_path / "a.jpg").write_bytes(expected)
        dct = jpeglib.read_dct(str(tmp_path / "a.jpg"))
        np.testing.assert_array_equal(out["qtables"].numpy(), dct.qt[:2])
        np.testing.assert_array_equal(out["qtables"].numpy(), quality_to_qtables(quality))
        assert int(out["quality"]) == quality


def test_plain_degrade_matches_libjpeg_files(tmp_path):
    images = np.stack([_natural(24, 40), 255 - _natural(24, 40)])
    decoded, qtables = input_pipeline.pillow_degrade(images, np.array([5, 50]))
    assert decoded.shape == images.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(qtables, quality_to_qtables(np.array([5, 50])))
    for image, out, q in zip(images, decoded, (5, 50), strict=True):
        np.testing.assert_array_equal(out, _pillow_decode(_pillow_jpeg(image, q)))
    single, single_tables = input_pipeline.pillow_degrade(images[0], 10, "4:4:4")
    assert single.shape == images[0].shape and single_tables.shape == (2, 8, 8)
    np.testing.assert_array_equal(single, _pillow_decode(_pillow_jpeg(images[0], 10, 0)))
    # The TF path writes the very bytes of the plain function's encoder.
    in_graph = transforms.tf_degrade(tf.constant(images[0]), tf.constant(10), "4:2:0")["jpeg"]
    assert in_graph.numpy() == jpeg.pillow_encode(images[0], quality=10)


# --- patches ------------------------------------------------------------------------------


def test_crop_window_inside_image_and_side_range():
    sides = []
    for height, width in [(40, 90), (128, 33), (20, 24), (P, P)]:
        for s in range(60):
            top, left, side = (
                int(v) for v in transforms.crop_window(height, width, P, tf.constant([s, 7]))
            )
            assert 0 <= top and top + side <= height and 0 <= left and left + side <= width
            short = min(height, width)
            assert min(P, short) <= side <= short
            if (height, width) == (40, 90):
                sides.append(side)
    assert min(sides) == P and max(sides) == 40  # both ends of the range are drawn


def test_patch_of_patch_sized_image_is_exact_and_flips_half_the_time():
    image = _natural(P, P)
    data = tf.constant(_png(image))
    n, flips = 200, 0
    for s in range(n):
        patch = transforms.random_patch(data, tf.constant([s, 1], tf.int64), P).numpy()
        if np.array_equal(patch, image[:, ::-1]):
            flips += 1
        else:
            np.testing.assert_array_equal(patch, image)
    assert abs(flips - n / 2) < 4 * math.sqrt(n / 4)  # binomial(200, 0.5), 4 sigma


def test_permute_channels_draws_each_of_the_six_orders_evenly():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    n, counts = 600, {}
    for s in range(n):
        out = transforms.permute_channels(tf.constant(image), tf.constant([s, 7], tf.int64))
        out = out.numpy()
        order = tuple(int(out[0, 0, c]) for c in range(3))  # image[0, 0] = (0, 1, 2)
        np.testing.assert_array_equal(out, image[..., list(order)])
        counts[order] = counts.get(order, 0) + 1
    assert len(counts) == 6
    for count in counts.values():  # binomial(600, 1/6): mean 100, sigma 9.1; 4 sigma
        assert abs(count - n / 6) < 4 * math.sqrt(n * (1 / 6) * (5 / 6)), counts
    seed = tf.constant([3, 7], tf.int64)
    a = transforms.permute_channels(tf.constant(image), seed).numpy()
    np.testing.assert_array_equal(a, transforms.permute_channels(tf.constant(image), seed))


def test_train_batches_with_permuted_channels_are_the_same_patches_reordered():
    plain, permuted = (
        next(
            input_pipeline.create_train_dataset(
                _config(permute_channels=flag, quality=10),
                batch_size_per_process=8,
                seed=2,
                process_index=0,
                process_count=1,
            )
        )
        for flag in (False, True)
    )
    orders = set()
    for x, x_perm, y_perm in zip(plain["x"], permuted["x"], permuted["y"], strict=True):
        order = None
        for candidate in itertools.permutations(range(3)):
            if np.array_equal(x[..., list(candidate)], x_perm):
                order = candidate
        assert order is not None, "not a channel permutation of the same patch"
        orders.add(order)
        # y is the libjpeg file of the permuted patch (the permutation comes before the JPEG).
        x8 = np.round(x_perm * 255).astype(np.uint8)
        expected = _pillow_decode(_pillow_jpeg(x8, 10))
        np.testing.assert_array_equal(np.round(y_perm * 255).astype(np.uint8), expected)
    assert len(orders) > 1
    np.testing.assert_array_equal(plain["qtables"], permuted["qtables"])


def test_jpeg_source_crop_decode_matches_full_decode():
    image = _natural(100, 131)
    jpeg = _pillow_jpeg(image, 90)
    for s in range(12):
        seed = tf.constant([s, 3], tf.int64)
        from_jpeg = transforms.random_patch(tf.constant(jpeg), seed, P).numpy()
        # Same seed on the PNG of the JPEG's (Pillow) decode takes the other code path.
        from_png = transforms.random_patch(tf.constant(_png(_pillow_decode(jpeg))), seed, P)
        np.testing.assert_array_equal(from_jpeg, from_png.numpy())


def test_small_image_is_upscaled_to_patch():
    image = _natural(20, 26)
    patch = transforms.random_patch(tf.constant(_png(image)), tf.constant([0, 0], tf.int64), P)
    assert patch.shape == (P, P, 3)
    assert abs(float(tf.reduce_mean(tf.cast(patch, tf.float32))) - image[:, :20].mean()) < 8


# --- quality sampling ---------------------------------------------------------------------


def _sample(mode, n, **kwargs):
    kwargs = {"quality": 5, "quality_min": 5, "quality_max": 50, "blind_mean": 10.0} | kwargs
    dataset = tf.data.Dataset.range(n).map(
        lambda i: transforms.sample_quality(tf.stack([i, tf.constant(9, tf.int64)]), mode, **kwargs)
    )
    return next(dataset.batch(n).as_numpy_iterator())


def test_blind_quality_matches_the_paper_formula():
    scipy_stats = pytest.importorskip("scipy.stats", reason="chi-square reference")
    n = 20_000
    q = _sample("blind", n)
    assert q.min() == 5 and q.max() <= 50
    ks = np.arange(5, 51)
    # floor(clip(5 + E, 5, 50)), E ~ Exp(mean 10): P(k) = e^{-(k-5)/10} - e^{-(k-4)/10}, k < 50.
    pmf = np.exp(-(ks - 5) / 10) - np.exp(-(ks - 4) / 10)
    pmf[-1] = np.exp(-45 / 10)
    counts = np.bincount(q, minlength=51)[5:]
    assert scipy_stats.chisquare(counts, pmf * n).pvalue > 1e-4
    assert abs(q.mean() - (ks * pmf).sum()) < 4 * q.std() / math.sqrt(n)


def test_uniform_and_fixed_quality():
    q = _sample("uniform", 3000, quality_min=10, quality_max=14)
    np.testing.assert_array_equal(np.unique(q), np.arange(10, 15))
    assert np.all(_sample("fixed", 10, quality=37) == 37)
    with pytest.raises(ValueError, match="quality_mode"):
        _sample("nope", 2)


# --- training pipeline --------------------------------------------------------------------


def test_train_batches_contract_and_y_is_pillows_decode():
    config = _config(quality_mode="uniform", quality_min=5, quality_max=50)
    batch = next(
        input_pipeline.create_train_dataset(
            config, batch_size_per_process=6, seed=1, process_index=0, process_count=1
        )
    )
    assert batch["x"].shape == batch["y"].shape == (6, P, P, 3)
    assert batch["x"].dtype == batch["y"].dtype == np.float32
    assert batch["qtables"].shape == (6, 2, 8, 8) and batch["qtables"].dtype == np.int32
    assert batch["quality"].shape == (6,) and batch["quality"].dtype == np.int32
    x8 = np.round(batch["x"] * 255).astype(np.uint8)
    np.testing.assert_array_equal(x8.astype(np.float32) / 255, batch["x"])
    for x, y, quality, qtables in zip(
        x8, batch["y"], batch["quality"], batch["qtables"], strict=True
    ):
        expected = _pillow_decode(_pillow_jpeg(x, int(quality)))
        np.testing.assert_array_equal(np.round(y * 255).astype(np.uint8), expected)
        np.testing.assert_array_equal(qtables, quality_to_qtables(int(quality)))


def test_same_seed_same_batches_and_restart_at_step():
    config = _config(quality_mode="blind")

    def run(seed, start_step=0, n=3):
        it = input_pipeline.create_train_dataset(
            config,
            batch_size_per_process=5,
            seed=seed,
            start_step=start_step,
            process_index=0,
            process_count=1,
        )
        return _take(it, n)

    full = run(seed=3, n=6)  # 30 examples: > 4 epochs of the 7 training photos
    again = run(seed=3, n=2)
    resumed = run(seed=3, start_step=4, n=2)
    other = run(seed=4, n=1)
    for a, b in zip(full[:2] + full[4:], again + resumed, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(full[0]["x"], other[0]["x"])


def test_two_processes_read_disjoint_shards(color_folder):
    config = _config(source="folder", path=str(color_folder), train_split="all")
    seen = []
    for index in range(2):
        it = input_pipeline.create_train_dataset(
            config, batch_size_per_process=5, seed=0, process_index=index, process_count=2
        )
        reds = {int(v) for b in _take(it, 4) for v in np.round(b["x"][:, 0, 0, 0] * 255)}
        seen.append(reds)
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {20 * k + 5 for k in range(10)}  # 20 draws cover 5 per shard


def test_corrupt_files_skipped_and_counted(tmp_path, caplog):
    good = _natural(40, 40)
    Image.fromarray(good).save(tmp_path / "good.png")
    Image.fromarray(good).save(tmp_path / "good.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    (tmp_path / "cut.jpg").write_bytes(_pillow_jpeg(good, 90)[:300])
    (tmp_path / "cut.png").write_bytes(_png(good)[:-30])
    config = _config(source="folder", path=str(tmp_path), eval_split="all")
    with caplog.at_level(logging.WARNING):
        batches = list(
            input_pipeline.create_eval_dataset(
                config, batch_size=1, process_index=0, process_count=1
            )
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Skipped 4 unreadable" in warnings[0]
    assert sorted(b["name"][0].decode() for b in batches) == ["good.jpg", "good.png"]
    train = input_pipeline.create_train_dataset(
        _config(source="folder", path=str(tmp_path), train_split="all"),
        batch_size_per_process=3,
        seed=0,
        process_index=0,
        process_count=1,
    )
    assert next(train)["x"].shape == (3, P, P, 3)


# --- evaluation pipeline ------------------------------------------------------------------


def test_eval_dataset_fixed_order_center_crop_and_jpeg_bytes(tmp_path):
    config = _config(eval_crop=48, eval_quality=10, source="embedded", eval_split="all")
    first = list(
        input_pipeline.create_eval_dataset(config, batch_size=3, process_index=0, process_count=1)
    )
    second = list(
        input_pipeline.create_eval_dataset(config, batch_size=3, process_index=0, process_count=1)
    )
    names = [n.decode() for b in first for n in b["name"]]
    assert names[0] == "astronaut" and len(names) == 8 and len(first[-1]["x"]) == 2
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
    from jpeg_jax.datasets import embedded

    astronaut = embedded.load_photo("astronaut")
    x0 = np.round(first[0]["x"][0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(x0, astronaut[232:280, 232:280])
    jpeg = first[0]["jpeg"][0]
    np.testing.assert_array_equal(np.round(first[0]["y"][0] * 255), _pillow_decode(jpeg))
    (tmp_path / "e.jpg").write_bytes(jpeg)
    np.testing.assert_array_equal(
        jpeglib.read_dct(str(tmp_path / "e.jpg")).qt[:2], quality_to_qtables(10)
    )
    assert np.all(first[0]["quality"] == 10)


def test_eval_whole_images_and_process_shards(color_folder):
    config = _config(source="folder", path=str(color_folder), eval_split="all")
    names = []
    for index in range(2):
        batches = input_pipeline.create_eval_dataset(
            config, batch_size=1, process_index=index, process_count=2
        )
        shard = []
        for batch in batches:
            height = int(batch["name"][0].decode().split("img")[1][:-4]) + 40
            assert batch["x"].shape == (1, height, 48, 3)  # whole image
            shard.append(batch["name"][0])
        names.append(set(shard))
    assert not names[0] & names[1] and len(names[0] | names[1]) == 10


def test_decode_formats_match_pillow():
    image = _natural(21, 34)
    for fmt, options in [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True}), ("TIFF", {})]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, **options)
        decoded = transforms.decode(tf.constant(buffer.getvalue())).numpy()
        np.testing.assert_array_equal(decoded, image, err_msg=fmt)
    jpeg = _pillow_jpeg(image, 75)
    np.testing.assert_array_equal(
        transforms.decode(tf.constant(jpeg)).numpy(), _pillow_decode(jpeg)
    )


def test_undetected_corrupt_file_is_dropped_at_read_time(tmp_path):
    good = _natural(40, 40)
    for k in range(3):
        Image.fromarray(good[:, ::-1] if k else good).save(tmp_path / f"good{k}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 50)
    config = _config(source="folder", path=str(tmp_path), train_split="all", check_files=False)
    it = input_pipeline.create_train_dataset(
        config, batch_size_per_process=4, seed=0, process_index=0, process_count=1
    )
    assert all(next(it)["x"].shape == (4, P, P, 3) for _ in range(3))

"""``config.data``'s keys and defaults, importable without TensorFlow.

``configs/default.py`` imports this module, not :mod:`jpeg_jax.input_pipeline` (which loads
TensorFlow), so that programs that only build configs and models, such as
``benchmarks/accelerator.py`` on a GPU machine without TensorFlow, run without it.
:func:`jpeg_jax.input_pipeline.default_data_config` is the same function.
"""

from __future__ import annotations

import ml_collections


def default_data_config() -> ml_collections.ConfigDict:
    """Every ``config.data`` key with its default (configs/default.py includes this)."""
    return ml_collections.ConfigDict(
        {
            # "embedded" (scikit-image photos) | "folder" | "tfds" | "ffhq".
            "source": "embedded",
            "path": "",  # folder: root directory, searched recursively.
            "test_fraction": 0.1,  # folder: expected fraction in split "test" (hash of path).
            "check_files": True,  # folder: drop unreadable/truncated files before training.
            "tfds_name": "",  # tfds: e.g. "div2k/bicubic_x2", "imagenet2012", "celeb_a_hq/1024".
            "image_key": "image",  # tfds: name of the image feature.
            "tfds_data_dir": "",  # tfds / ffhq: TFDS data_dir; "" = TFDS's default.
            "manual_dir": "",  # tfds / ffhq: manual download dir (FFHQ PNGs, ImageNet tars).
            "ffhq_resolution": 128,  # ffhq: 128 (FFHQ-128, the paper's) or 1024.
            "train_split": "train",  # embedded/folder/ffhq: "train"; tfds: any split string.
            "eval_split": "test",
            "patch_size": 128,  # training patch side (paper: 128).
            "max_crop_side": 0,  # largest random crop side resized to the patch (0: short side).
            # Each patch's R, G, B in a random order (not in the paper): a colour-neutral prior
            # from few photos (the demo's 7), whose own colours a model otherwise memorises.
            "permute_channels": False,
            "quality_mode": "fixed",  # "fixed" | "uniform" | "blind" (paper's blind sampler).
            "quality": 5,  # fixed mode.
            "quality_min": 5,  # uniform / blind lower bound (inclusive).
            "quality_max": 50,  # uniform / blind upper bound (inclusive).
            "blind_mean": 10.0,  # blind: mean of the exponential added to quality_min.
            "subsampling": "4:2:0",  # chroma subsampling of the JPEGs: "4:2:0" | "4:4:4".
            "shuffle_buffer": 10_000,  # tfds / ffhq sources (others shuffle the whole shard).
            "eval_quality": 5,  # evaluation JPEG quality (paper: FFHQ 5, ImageNet 10).
            "eval_crop": 0,  # evaluation: 0 = whole images, else central crop of this side.
            "eval_num_examples": -1,  # evaluation: first N images of the split, -1 = all.
            # evaluation: only the eval_split's images named in a list: "" (all), "ctest10k"
            # (ImageNet validation, Table 5) or a list file (jpeg_jax.datasets.subsets).
            "eval_subset": "",
            # FID/KID reference statistics (jpeg_jax.fid_stats): this split of the source, whole
            # or eval_crop-cropped as the test images (paper: FFHQ train; ImageNet validation).
            "fid_reference_split": "train",
            "num_parallel_calls": -1,  # per-example map threads, -1 = tf.data AUTOTUNE.
            "prefetch": -1,  # batches prefetched, -1 = AUTOTUNE.
        }
    )

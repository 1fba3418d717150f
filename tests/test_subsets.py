"""Evaluation subsets: the shipped ctest10k list, and selecting by name from folders and TFDS."""

import hashlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from jpeg_jax import input_pipeline
from jpeg_jax.datasets import open_source, subsets

CTEST10K_SHA256 = "7574f5423a9a870d7a29af0b250de199d42c24c48673439a7a6e19ce32fd7011"
# Three names on the list and two that are not (val 1 and 2 are not in ctest10k).
LISTED = ("ILSVRC2012_val_00042961.JPEG", "ILSVRC2012_val_00040086.JPEG")
LISTED3 = "ILSVRC2012_val_00049174.JPEG"
UNLISTED = ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG")


def test_ctest10k_is_the_published_list():
    path = subsets.list_path("ctest10k")
    # The file as published (colorizer-fcn lists/ctest10k.txt), not edited.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CTEST10K_SHA256
    names = subsets.load_names("ctest10k")
    assert len(names) == 10_000 and len(set(names)) == 10_000
    ids = [int(re.fullmatch(r"ILSVRC2012_val_(\d{8})\.JPEG", n).group(1)) for n in names]
    assert min(ids) >= 1 and max(ids) <= 50_000
    lines = path.read_text().splitlines()
    classes = {line.split("/")[1] for line in lines}
    labels = {int(line.split()[1]) for line in lines}
    assert len(classes) == 1000 and labels == set(range(1000))
    assert set(LISTED) | {LISTED3} <= set(names) and not set(UNLISTED) & set(names)


def test_list_files_and_errors(tmp_path):
    listing = tmp_path / "mine.txt"
    listing.write_text("# my subset\n/val/n01/a.JPEG 3\n\nb.png\nsub\\c.jpg extra\n")
    assert subsets.load_names(listing) == ("a.JPEG", "b.png", "c.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        subsets.load_names(tmp_path / "missing.txt")
    (tmp_path / "twice.txt").write_text("a.png\nx/a.png\n")
    with pytest.raises(ValueError, match="twice"):
        subsets.load_names(tmp_path / "twice.txt")
    with pytest.raises(ValueError, match="unknown subset"):
        subsets.list_path("ctest5k")


def _save(path, value, height=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, 48, 3), value, np.uint8)).save(path, format="PNG")


def test_folder_subset_by_base_name_in_split_order(tmp_path):
    names = [*LISTED, LISTED3, *UNLISTED]
    for i, name in enumerate(names):  # ImageNet's val/SYNSET/ layout, PNG bytes are fine
        _save(tmp_path / f"n0{i}" / name, 10 * i)
    config = input_pipeline.default_data_config()
    config.update(source="folder", path=str(tmp_path), eval_split="all", eval_crop=32)
    source = open_source(config, "all", subset="ctest10k")
    assert source.names == (f"n00/{LISTED[0]}", f"n01/{LISTED[1]}", f"n02/{LISTED3}")
    shards = [
        open_source(config, "all", subset="ctest10k", process_index=i, process_count=2).names
        for i in range(2)
    ]
    assert shards == [source.names[0::2], source.names[1::2]]
    assert open_source(config, "all", subset="ctest10k", max_examples=2).names == source.names[:2]
    config.eval_subset = "ctest10k"
    batches = input_pipeline.create_eval_dataset(
        config, batch_size=2, process_index=0, process_count=1
    )
    seen = [n.decode() for b in batches for n in b["name"]]
    assert seen == list(source.names)


class FakeImagenetVal(tfds.core.GeneratorBasedBuilder):
    """A few images with imagenet2012's ``file_name`` feature."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self):
        features = {"image": tfds.features.Image(shape=(None, None, 3))}
        features["file_name"] = tfds.features.Text()
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"validation": self._generate_examples()}

    def _generate_examples(self):
        for i, name in enumerate(STORED):
            yield name, {"image": np.full((16 + i, 16, 3), 40 * i, np.uint8), "file_name": name}


STORED = [UNLISTED[0], LISTED[0], UNLISTED[1], LISTED[1], LISTED3]


class FakeNoNames(FakeImagenetVal):
    """The same images without a ``file_name`` feature."""

    def _info(self):
        features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _generate_examples(self):
        for name, example in super()._generate_examples():
            yield name, {"image": example["image"]}


def test_tfds_subset_filters_on_file_name(tmp_path):
    FakeImagenetVal(data_dir=str(tmp_path)).download_and_prepare()
    config = input_pipeline.default_data_config()
    config.update(source="tfds", tfds_name="fake_imagenet_val", tfds_data_dir=str(tmp_path))

    def names(**kwargs):
        source = open_source(config, "validation", subset="ctest10k", **kwargs)
        got = [ex["name"].decode() for ex in source.ordered().as_numpy_iterator()]
        return source.num_examples, got

    count, everything = names()
    assert sorted(everything) == sorted([*LISTED, LISTED3]) and count == 10_000  # listed names
    first, second = (names(process_index=i, process_count=2)[1] for i in range(2))
    assert sorted(first + second) == sorted(everything) and not set(first) & set(second)
    assert names(max_examples=2) == (2, everything[:2])
    # The images themselves come through: heights 16 + i identify them.
    config.update(eval_subset="ctest10k", eval_split="validation")
    batches = list(
        input_pipeline.create_eval_dataset(config, batch_size=1, process_index=0, process_count=1)
    )
    for batch in batches:
        assert batch["x"].shape[1] == 16 + STORED.index(batch["name"][0].decode())
    assert len(batches) == 3
    FakeNoNames(data_dir=str(tmp_path)).download_and_prepare()
    config.tfds_name = "fake_no_names"
    with pytest.raises(ValueError, match="file_name"):
        open_source(config, "validation", subset="ctest10k")

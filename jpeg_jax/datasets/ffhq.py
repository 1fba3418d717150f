"""FFHQ (Karras et al. 2019) as a TFDS builder that reads the official PNGs from a manual dir.

Split as in the paper: images 00000..59999 train, 60000..69999 test. The split is decided by
each file's index (its name), so a partial or fake manual dir works as well as the full one.

Builder configs: ``ffhq/1024`` (the 1024 x 1024 images) and ``ffhq/128`` (FFHQ-128, the paper's
benchmark). ``128`` reads the official ``thumbnails128x128`` if present, else downsamples the
1024 images with Pillow's Lanczos filter (the filter NVIDIA's thumbnails were made with).

Manual dir layout (as in the official release; folders by thousands or flat both work)::

    <manual_dir>/images1024x1024/00000/00000.png ... 69999.png
    <manual_dir>/thumbnails128x128/00000/00000.png ... 69999.png   (optional, for ffhq/128)
"""

from __future__ import annotations

import dataclasses
import io
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

NUM_TRAIN = 60_000
NUM_IMAGES = 70_000
_FOLDERS = {1024: "images1024x1024", 128: "thumbnails128x128"}


def split_of(index: int) -> str:
    """The paper's split of FFHQ image ``index``: the first 60,000 train, the rest test."""
    if not 0 <= index < NUM_IMAGES:
        raise ValueError(f"FFHQ index must be in [0, {NUM_IMAGES}), got {index}")
    return "train" if index < NUM_TRAIN else "test"


def find_images(
    manual_dir: str | pathlib.Path, resolution: int
) -> tuple[dict[int, pathlib.Path], bool]:
    """Index -> PNG path for a resolution, and whether those files need downsampling.

    Looks in ``thumbnails128x128`` (for 128) or ``images1024x1024``, else anywhere under the
    manual dir; files whose stem is not an integer are ignored.
    """
    manual_dir = pathlib.Path(manual_dir)
    candidates = [(manual_dir / _FOLDERS[resolution], False)]
    if resolution != 1024:
        candidates.append((manual_dir / _FOLDERS[1024], True))
    for folder, downsample in candidates:
        found = {int(p.stem): p for p in folder.rglob("*.png") if p.stem.isdigit()}
        if found:
            return found, downsample
    found = {int(p.stem): p for p in manual_dir.rglob("*.png") if p.stem.isdigit()}
    if not found:
        raise FileNotFoundError(f"no FFHQ PNGs (00000.png ...) under {manual_dir}")
    return found, True


@dataclasses.dataclass
class FfhqConfig(tfds.core.BuilderConfig):
    """Resolution of the stored images."""

    resolution: int = 1024


class Ffhq(tfds.core.GeneratorBasedBuilder):
    """Flickr-Faces-HQ, aligned faces, from the official PNGs in ``manual_dir``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Paper split: 60,000 train / 10,000 test by image index."}
    BUILDER_CONFIGS = [
        FfhqConfig(name="1024", description="1024 x 1024 images", resolution=1024),
        FfhqConfig(name="128", description="FFHQ-128: 128 x 128 thumbnails", resolution=128),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the official FFHQ images (https://github.com/NVlabs/ffhq-dataset:
    `python download_ffhq.py --images` for 1024 px and/or `--thumbs` for 128 px, or the
    Google Drive folders) and pass the directory holding `images1024x1024/` and/or
    `thumbnails128x128/` as manual_dir.
    """

    # TFDS 4.9.x's default looks the path up through ``importlib_resources``, which it only
    # installs on Python < 3.9; the file is known, so say it.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        side = self.builder_config.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(side, side, 3), encoding_format="png"),
                    "index": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            homepage="https://github.com/NVlabs/ffhq-dataset",
        )

    def _split_generators(self, dl_manager):
        files, downsample = find_images(dl_manager.manual_dir, self.builder_config.resolution)
        by_split = {"train": {}, "test": {}}
        for index, path in files.items():
            by_split[split_of(index)][index] = path
        return {
            split: self._generate_examples(chosen, downsample)
            for split, chosen in by_split.items()
            if chosen
        }

    def _generate_examples(self, files, downsample):
        side = self.builder_config.resolution
        for index, path in sorted(files.items()):
            image = path
            if downsample:
                with Image.open(path) as original:
                    small = original.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                small.save(buffer, format="PNG")
                image = buffer.getvalue()
            yield index, {"image": image, "index": index}

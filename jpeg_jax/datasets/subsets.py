"""Named lists of evaluation images inside a split, such as ImageNet's ctest10k.

``ctest10k`` is the 10,000-image subset of the ImageNet (ILSVRC 2012) validation set that Larsson,
Maire and Shakhnarovich defined for "Learning Representations for Automatic Colorization" (ECCV
2016) and that later restoration papers evaluate on (colorization, Palette, and the JPEG paper's
Table 5, "ImageNet-ctest10k"). ``ctest10k.txt`` beside this module is the list as published in
github.com/AruniRC/colorizer-fcn, file ``lists/ctest10k.txt`` (commit 33ab423, "gustav's val
images list", i.e. Gustav Larsson's), shipped byte for byte: one line per image,
``/SYNSET/ILSVRC2012_val_NNNNNNNN.JPEG LABEL``, 10,000 distinct file names from all 1,000 classes
(6 to 11 per class), sha256 ``7574f5423a9a870d7a29af0b250de199d42c24c48673439a7a6e19ce32fd7011``.

A subset selects images by file name (the base name, so a flat ``val/`` folder, a
``val/SYNSET/`` tree and TFDS ``imagenet2012``'s ``file_name`` feature all match).
"""

from __future__ import annotations

import os
import pathlib

SUBSETS = {"ctest10k": "ctest10k.txt"}


def list_path(name: str) -> pathlib.Path:
    """The shipped list file of a named subset (see :data:`SUBSETS`)."""
    if name not in SUBSETS:
        raise ValueError(f"unknown subset {name!r}; named subsets: {sorted(SUBSETS)}")
    return pathlib.Path(__file__).with_name(SUBSETS[name])


def load_names(name_or_path: str | os.PathLike) -> tuple[str, ...]:
    """File base names of a subset, in list order.

    Args:
      name_or_path: a name of :data:`SUBSETS` (``"ctest10k"``) or the path of a text file with one
        image per line: the first whitespace-separated field is a file name or path (its base name
        is used); blank lines and lines starting with ``#`` are ignored.

    Returns:
      Distinct base names (e.g. ``"ILSVRC2012_val_00000293.JPEG"``).

    Raises:
      ValueError: unknown name, empty list or repeated names.
      FileNotFoundError: a list file that does not exist.
    """
    name_or_path = os.fspath(name_or_path)
    path = list_path(name_or_path) if name_or_path in SUBSETS else pathlib.Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"subset list {str(path)!r} does not exist (named subsets: {sorted(SUBSETS)})"
        )
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(base_name(line.split()[0]))
    if not names:
        raise ValueError(f"subset list {str(path)!r} names no images")
    if len(set(names)) != len(names):
        raise ValueError(f"subset list {str(path)!r} names some images twice")
    return tuple(names)


def base_name(path: str) -> str:
    """The file name part of a '/'-separated (or OS) path, as subsets compare them."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]

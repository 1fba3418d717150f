"""A folder of images as a dataset: recursive listing, deterministic split, corrupt-file scan.

Any directory tree of ``.jpg/.jpeg/.png/.webp/.bmp/.gif/.tif/.tiff`` files (extension case
ignored). The train/test split is decided per file from a CRC32 of its relative path, so it is
the same on every machine, in every listing order, and adding files never moves old ones
between splits.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import pathlib
import zlib

from PIL import Image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_SPLIT_BUCKETS = 10_000
_TAIL_BYTES = 4096

log = logging.getLogger(__name__)


def in_test_split(relative_path: str, test_fraction: float) -> bool:
    """Whether a file (path relative to the root, '/'-separated) belongs to the test split."""
    bucket = zlib.crc32(relative_path.encode("utf-8")) % _SPLIT_BUCKETS
    return bucket < round(test_fraction * _SPLIT_BUCKETS)


def list_images(root: str | os.PathLike, split: str = "all", test_fraction: float = 0.1):
    """Image files under ``root`` (recursive), sorted by relative path.

    Args:
      root: directory to search.
      split: ``"train"``, ``"test"`` or ``"all"``; see :func:`in_test_split`.
      test_fraction: fraction of files (in expectation) in the test split, 0..1.

    Returns:
      Sorted list of '/'-separated paths relative to ``root``.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"folder split must be 'train', 'test' or 'all', got {split!r}")
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    found = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for filename in filenames:
            if filename.lower().endswith(EXTENSIONS):
                found.append((pathlib.Path(dirpath) / filename).relative_to(root).as_posix())
    if split != "all":
        want_test = split == "test"
        found = [p for p in found if in_test_split(p, test_fraction) == want_test]
    return sorted(found)


def check_image_file(path: str | os.PathLike) -> str | None:
    """Cheap readability check: ``None`` if the file looks decodable, else the reason.

    Reads the header with Pillow (format, size) and, for JPEG and PNG, looks for the end
    marker (EOI / IEND) in the last bytes, which catches truncated downloads without decoding
    the whole image.
    """
    try:
        with Image.open(path) as image:
            image_format = image.format
            width, height = image.size
        if width < 1 or height < 1:
            return "empty image"
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - _TAIL_BYTES))
            tail = f.read()
    except Exception as e:  # noqa: BLE001 -- any failure means "skip this file"
        return f"{type(e).__name__}: {e}"
    if image_format in ("JPEG", "MPO") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no EOI marker)"
    if image_format == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def drop_unreadable(root: str | os.PathLike, relative_paths: list[str], *, num_threads: int = 16):
    """Removes files that fail :func:`check_image_file`; logs one warning line if any did.

    Returns:
      ``(readable_paths, skipped)``: the kept relative paths (order kept) and a list of
      ``(relative_path, reason)`` for the skipped ones.
    """
    root = pathlib.Path(root)
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        reasons = list(pool.map(lambda p: check_image_file(root / p), relative_paths))
    kept = [p for p, reason in zip(relative_paths, reasons, strict=True) if reason is None]
    skipped = [(p, r) for p, r in zip(relative_paths, reasons, strict=True) if r is not None]
    if skipped:
        examples = ", ".join(f"{p} ({r})" for p, r in skipped[:3])
        log.warning(
            "Skipped %d unreadable image file(s) of %d under %s, e.g. %s",
            len(skipped),
            len(relative_paths),
            root,
            examples,
        )
    return kept, skipped

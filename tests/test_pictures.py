"""Pictures as a viewer shows them: orientation of images and rectangles (jpeg_jax.pictures)."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from jpeg_jax import pictures


def _upright_indices(size, orientation):
    """Stored pixel indices as Pillow's EXIF transpose shows them (independent reference)."""
    index = np.arange(size[0] * size[1], dtype=np.int32).reshape(size)
    image = Image.fromarray(index, mode="I")
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    return np.asarray(ImageOps.exif_transpose(image))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_the_pictures_orientation(orientation):
    size = (6, 10)
    upright = _upright_indices(size, orientation)
    picture = pictures.to_picture(
        np.repeat((np.arange(60).reshape(size) / 255.0)[..., None], 3, -1), orientation, gray=True
    )
    np.testing.assert_array_equal(np.asarray(picture), upright.astype(np.uint8))
    for box in [(1, 2, 4, 9), (0, 0, 6, 10), (5, 3, 6, 4)]:
        up = pictures.upright_box(box, orientation, size)
        stored_rows, stored_cols = np.unravel_index(upright[up[0] : up[2], up[1] : up[3]], size)
        assert (stored_rows.min(), stored_cols.min()) == box[:2]
        assert (stored_rows.max() + 1, stored_cols.max() + 1) == box[2:]
        assert stored_rows.size == (box[2] - box[0]) * (box[3] - box[1])
        assert pictures.stored_box(up, orientation, size) == box


def test_std_picture_is_the_fourth_root_map():
    std = np.full((2, 3, 3), 1.0 / 255.0)
    level = np.asarray(pictures.std_picture(std, 1))
    assert level.shape == (2, 3) and np.all(level == round(255 * (1 / 255) ** 0.25))


def test_write_pictures_writes_pictures_and_bytes(tmp_path):
    picture = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    outputs = {str(tmp_path / "a" / "x.png"): picture, str(tmp_path / "y.json"): b"{}\n"}
    pictures.write_pictures(outputs, "png", None)
    assert (tmp_path / "y.json").read_bytes() == b"{}\n"
    with Image.open(tmp_path / "a" / "x.png") as im:
        assert im.format == "PNG" and im.size == (4, 4)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "x.png", "y.json"]
